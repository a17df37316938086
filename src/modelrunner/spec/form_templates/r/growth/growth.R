# Logistic population growth, an R model: parameters in, series.csv out, progress as it goes.
library(modelrunner)

p <- params()
step <- seq(0, p$steps)
population <- p$capacity / (1 + (p$capacity / p$initial - 1) * exp(-p$rate * step))
progress(0.5, "projected")
write.csv(data.frame(step = step, population = round(population, 4)), outputs("series.csv"), row.names = FALSE)
progress(1, sprintf("population after %d steps: %.1f", p$steps, population[length(population)]))
