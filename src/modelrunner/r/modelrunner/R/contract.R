# The model contract of modelrunner, as src/modelrunner/job.py offers it to Python models: a
# model does not need this package (it may read the MODELRUNNER_* variables and print
# "::progress::" lines itself); these helpers only save the boilerplate.

contract_variable <- function(variable) {
  value <- Sys.getenv(variable, unset = "")
  if (!nzchar(value)) {
    stop(variable, " is not set: is this running under modelrunner?", call. = FALSE)
  }
  value
}

contract_folder <- function(variable, parts) {
  folder <- contract_variable(variable)
  if (length(parts) == 0) folder else do.call(file.path, c(list(folder), parts))
}

#' The run's validated parameters, defaults filled in, as jsonlite::fromJSON reads them (a named
#' list; arrays become vectors). Arguments go to fromJSON (e.g. simplifyVector = FALSE).
params <- function(...) {
  fromJSON(contract_variable("MODELRUNNER_PARAMS"), ...)
}

#' The folder holding one subfolder per declared input; with arguments, a path inside it
#' (inputs("cases", "cases.csv")).
inputs <- function(...) contract_folder("MODELRUNNER_INPUTS", list(...))

#' The folder whose files become the run's outputs; with arguments, a path inside it
#' (write.csv(estimates, outputs("rt.csv"))).
outputs <- function(...) contract_folder("MODELRUNNER_OUTPUTS", list(...))

#' A folder kept across the attempts of one run (restored after preemption); with arguments, a
#' path inside it.
checkpoint <- function(...) contract_folder("MODELRUNNER_CHECKPOINT", list(...))

#' Report progress (0 to 1) with an optional message: one "::progress::" line on standard
#' output, flushed at once. Returns the fraction, invisibly.
progress <- function(fraction, message = "") {
  fraction <- min(max(as.numeric(fraction)[[1]], 0), 1)
  message <- gsub("[\r\n]+", " ", paste(message, collapse = " "))
  line <- sub("\\s+$", "", sprintf("::progress:: %.4f %s", fraction, message))
  cat(line, "\n", sep = "", file = stdout())
  flush(stdout())
  invisible(fraction)
}

# Under modelrunner, an R error that stops the script is the run's error: its message goes to the
# file MODELRUNNER_FAILURE_NOTE names (the attempt's error then ends with it), and R ends with
# exit status 1, as it does by default. Only in Rscript (not interactive R), and only when the
# script has not set an error handler of its own.
.onLoad <- function(libname, pkgname) {
  note <- Sys.getenv("MODELRUNNER_FAILURE_NOTE", unset = "")
  if (nzchar(note) && !interactive() && is.null(getOption("error"))) {
    options(error = function() {
      said <- gsub("\\s+", " ", trimws(geterrmessage()))
      said <- sub("^Error(?: in .+?)? ?: ", "", said, perl = TRUE)
      try(writeLines(substr(said, 1, 500), note), silent = TRUE)
      quit(save = "no", status = 1, runLast = FALSE)
    })
  }
}
