# Rt from daily case counts (Cori et al. 2013, as EpiEstim computes it) with modelrunner's R
# helper: params() reads the run's parameters, outputs() names files in its outputs folder, and
# progress() moves the run's progress bar.
library(modelrunner)

p <- params()
cases <- read.csv("cases.csv", colClasses = c(date = "Date", cases = "integer"))
days <- nrow(cases)
if (days <= p$window + 1) stop("cases.csv holds ", days, " days: too few for a window of ", p$window)

# The serial interval: a gamma distribution of mean si_mean and sd si_sd, discretised by day.
shape <- (p$si_mean / p$si_sd)^2
rate <- p$si_mean / p$si_sd^2
serial <- diff(pgamma(0:days, shape = shape, rate = rate))
serial[1] <- 0 # no one infects on the day of their own onset
serial <- serial / sum(serial)

# Infectiousness: what all earlier cases add up to on each day.
incidence <- cases$cases
infectious <- vapply(seq_len(days), function(t) {
  if (t == 1) return(0)
  sum(incidence[(t - 1):1] * serial[1:(t - 1)])
}, numeric(1))

prior_shape <- 1 # EpiEstim's default prior: mean 5, sd 5
prior_scale <- 5
rows <- list()
first <- p$window + 1
for (t in first:days) {
  span <- (t - p$window + 1):t
  posterior_shape <- prior_shape + sum(incidence[span])
  posterior_scale <- 1 / (1 / prior_scale + sum(infectious[span]))
  rows[[length(rows) + 1]] <- data.frame(
    date = format(cases$date[t]),
    cases = incidence[t],
    rt_mean = round(posterior_shape * posterior_scale, 4),
    rt_lower = round(qgamma(0.025, shape = posterior_shape, scale = posterior_scale), 4),
    rt_upper = round(qgamma(0.975, shape = posterior_shape, scale = posterior_scale), 4)
  )
  done <- t - first + 1
  if (done %% 10 == 0) progress(done / (days - first + 1), paste("estimated", format(cases$date[t])))
}
estimates <- do.call(rbind, rows)
write.csv(estimates, outputs("rt.csv"), row.names = FALSE)

newest <- estimates[nrow(estimates), ]
trend <- if (newest$rt_lower > 1) "growing" else if (newest$rt_upper < 1) "declining" else "uncertain"
summary <- list(
  date = newest$date, rt_mean = newest$rt_mean, rt_lower = newest$rt_lower, rt_upper = newest$rt_upper,
  trend = trend, params = p
)
writeLines(jsonlite::toJSON(summary, auto_unbox = TRUE, pretty = TRUE, digits = NA), outputs("summary.json"))
progress(1, paste("Rt on", newest$date, "is", newest$rt_mean, "-", trend))
cat("Rt on", newest$date, ":", newest$rt_mean, "(", newest$rt_lower, "-", newest$rt_upper, ")", trend, "\n")
