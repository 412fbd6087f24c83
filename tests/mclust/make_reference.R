# Regenerates the mclust reference answers of tests/test_mclust.py:
#
#     Rscript tests/mclust/make_reference.R
#
# Needs R and mclust 6.0.0 (Debian: apt-get install r-base-core r-cran-mclust;
# jsonlite comes with them).  Writes one JSON file per data set into this
# script's folder; the test reads them and needs no R.
#
# What is computed, for each data set and each of mclust's 14 models:
#   start    mclust's own start: z = unmap(hclass(hc(data, "VVV"), G)), stored
#            as the class of each row (1-based).
#   mstep    mstep(data, model, z): pro, mean, variance$sigma; its inner
#            iterations (VEI VEE EVE VVE VEV) run to their fixed point (INNER).
#   estep    the log-likelihood of the mstep's parameters (estep).
#   fixed    me(data, model, z) for N_FIXED iterations (outer tol 0, so no
#            convergence rule is involved; me still stops where the loglik
#            did not change at all): loglik, parameters, BIC, "iterations".
#   converged  me(data, model, z) to an outer tolerance CONVERGED_TOL: loglik,
#            parameters, BIC and ICL; "iterations" is how many it took.
#
# How me's iterations align with an EM started from the M-step of z (checked
# below, for every model, against mstep/estep called in turn): me runs
# "M-step, E-step" N times.  Its parameters are those of the N-th M-step and
# its loglik is the log-likelihood of those parameters (the N-th E-step's).
# So with theta_1 = mstep(z) given as the initial parameters of an EM whose
# iteration is "E-step, M-step" (scikit-learn's, daskgmm's), me's answer after
# N iterations is the parameters after N - 1 of those iterations, and its
# loglik is the log-likelihood computed in the N-th iteration's E-step.
#
# mclust's BIC is 2 loglik - npar log(n): larger is better, minus the BIC of
# scikit-learn and daskgmm.  Numbers are written with 17 significant digits.

suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})

stopifnot(packageVersion("mclust") == "6.0.0")

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grep("^--file=", args)])
OUT <- if (length(script)) dirname(normalizePath(script)) else "tests/mclust"

MODELS <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE", "EVE", "VVE",
            "EEV", "VEV", "EVV", "VVV")
N_FIXED <- 20L
BIG <- 100000L
# Inner iterations of the iterative M-steps (VEI VEE EVE VVE VEV): until the
# target's relative change is exactly 0 (or INNER_MAX iterations, where it
# cycles in its last bits), so the M-step is its fixed point to rounding.  The
# orientation MM of EVE and VVE creeps: stopped at a change of 1e-14 its
# covariances are still 3e-7 (relative) from the fixed point.
INNER_TOL <- 0
INNER_MAX <- 20000L
INNER <- emControl(tol = c(1e-10, INNER_TOL), itmax = c(.Machine$integer.max, INNER_MAX))
FIXED <- emControl(tol = c(0, INNER_TOL), itmax = c(N_FIXED, INNER_MAX))
# me to a relative change of the loglik below 1e-15; at mclust's default 1e-5,
# or even 1e-13, the slow data sets stop 1e-5 (relative) from the fixed point.
CONVERGED_TOL <- 1e-15
CONVERGED <- emControl(tol = c(CONVERGED_TOL, INNER_TOL), itmax = c(BIG, INNER_MAX))

# -- writing --------------------------------------------------------------------

rows <- function(m) unname(lapply(seq_len(nrow(m)), function(i) unname(m[i, ])))

params_json <- function(parameters, G) {
  # mean is d x G in mclust, written (G, d); sigma d x d x G, written (G, d, d).
  sigma <- parameters$variance$sigma
  list(
    pro = unname(as.numeric(parameters$pro)),
    mean = rows(t(matrix(parameters$mean, ncol = G))),
    sigma = lapply(seq_len(G), function(k) rows(matrix(sigma[, , k], nrow = dim(sigma)[1])))
  )
}

write_reference <- function(value, name) {
  path <- file.path(OUT, name)
  writeLines(toJSON(value, auto_unbox = TRUE, digits = I(17), na = "null", pretty = FALSE), path)
  cat("wrote", path, "\n")
}

# -- the check of the alignment described above ----------------------------------

# me for `iterations` iterations against mstep and estep called in turn as many
# times: the largest relative differences of loglik, means and covariances.
# The iterative M-steps restart their inner loop from the previous outer
# iteration's answer inside me, from scratch in mstep: for EVE and VVE (the
# orientation MM) and VEE both stop where the target's change vanishes in
# rounding, which leaves the covariances about 1e-7 (relative) apart.
alignment <- function(X, model, z, iterations = 3L) {
  zz <- z
  for (i in seq_len(iterations)) {
    m <- mstep(X, model, zz, control = INNER, warn = FALSE)
    e <- estep(X, model, m$parameters, warn = FALSE)
    zz <- e$z
  }
  fit <- me(X, model, z, control = emControl(tol = c(0, INNER_TOL), itmax = c(iterations, INNER_MAX)), warn = FALSE)
  if (is.na(fit$loglik) || is.na(e$loglik)) return(NULL)
  rel <- function(a, b) max(abs(a - b)) / max(1, abs(b))
  list(
    iterations = iterations,
    loglik = abs(fit$loglik - e$loglik) / abs(e$loglik),
    mean = rel(fit$parameters$mean, m$parameters$mean),
    sigma = rel(fit$parameters$variance$sigma, m$parameters$variance$sigma)
  )
}

# -- the 14 models ---------------------------------------------------------------

fit_models <- function(X, G, label) {
  n <- nrow(X)
  d <- ncol(X)
  cls <- hclass(hc(X, modelName = "VVV"), G)
  z <- unmap(cls)
  out <- list()
  for (model in MODELS) {
    entry <- list(n_parameters = nMclustParams(model, d, G))
    ms <- mstep(X, model, z, control = INNER, warn = FALSE)
    if (!is.null(attr(ms, "returnCode")) && attr(ms, "returnCode") < 0 || any(is.na(ms$parameters$pro))) {
      entry$error <- paste("mstep:", attr(ms, "WARNING"))
      out[[model]] <- entry
      next
    }
    entry$mstep <- params_json(ms$parameters, G)
    entry$mstep$inner_iterations <- if (is.null(attr(ms, "info"))) 0L else abs(unname(attr(ms, "info")[1]))
    es <- estep(X, model, ms$parameters, warn = FALSE)
    entry$estep <- list(loglik = es$loglik)
    for (what in c("fixed", "converged")) {
      control <- if (what == "fixed") FIXED else CONVERGED
      fit <- me(X, model, z, control = control, warn = FALSE)
      iterations <- abs(as.numeric(unlist(attr(fit, "info")))[1])
      if (is.na(fit$loglik)) {
        entry[[what]] <- list(error = attr(fit, "WARNING"))
        next
      }
      bic <- bic(model, fit$loglik, n, d, G)
      result <- c(
        list(loglik = fit$loglik, bic = bic, iterations = iterations),
        params_json(fit$parameters, G)
      )
      if (what == "converged") {
        # mclust's ICL (icl.Mclust): BIC + 2 sum_i log z_{i, map(i)}, z the
        # E-step of the returned parameters.
        result$icl <- mclust:::icl.Mclust(list(n = n, z = fit$z, bic = bic))
        result$converged <- iterations < BIG
      }
      entry[[what]] <- result
    }
    entry$alignment <- alignment(X, model, z)
    a <- entry$alignment
    if (is.null(a) || a$loglik > 1e-8 || a$mean > 1e-6 || a$sigma > 1e-6) {
      stop("me does not align with mstep/estep: ", label, " ", model)
    }
    if (a$sigma > 1e-12) cat(sprintf("  %s %s: me against mstep/estep %.1e (covariances)\n", label, model, a$sigma))
    out[[model]] <- entry
  }
  out
}

dataset_reference <- function(name, X, G, source) {
  X <- unname(as.matrix(X))
  storage.mode(X) <- "double"
  cat(name, nrow(X), "x", ncol(X), "G =", G, "\n")
  list(
    name = name,
    source = source,
    mclust_version = as.character(packageVersion("mclust")),
    n_fixed = N_FIXED,
    inner_tol = INNER_TOL,
    converged_tol = CONVERGED_TOL,
    G = G,
    X = rows(X),
    start_class = as.integer(hclass(hc(X, modelName = "VVV"), G)),
    models = fit_models(X, G, name)
  )
}

data(diabetes, package = "mclust")
data(banknote, package = "mclust")

write_reference(dataset_reference("faithful", faithful, 2L, "R datasets::faithful"), "faithful.json")
write_reference(dataset_reference("iris", iris[, 1:4], 3L, "R datasets::iris[, 1:4]"), "iris.json")
write_reference(dataset_reference("diabetes", diabetes[, -1], 3L, "mclust::diabetes[, -1]"), "diabetes.json")
write_reference(dataset_reference("banknote", banknote[, -1], 3L, "mclust::banknote[, -1]"), "banknote.json")

# -- the noise component ---------------------------------------------------------
#
# faithful plus 10% points drawn uniformly in its bounding box (seed 23).  The
# noise's density is 1 / V with V the volume of the data's bounding box, as
# daskgmm's noise="box" (mclust's default hypvol() would take the smaller of
# that box and the principal components' box).  Start: mclust's own rule when
# the noise rows are known (Mclust's initialization = list(noise = ...)): hc on
# the other rows, z = unmap(c(their classes, G + 1 for the noise rows)).

NOISE_MODELS <- c("VVV", "EEE", "VII", "VEV")

noise_reference <- function() {
  X0 <- unname(as.matrix(faithful))
  G <- 2L
  set.seed(23)
  m <- round(0.1 * nrow(X0))
  lower <- apply(X0, 2, min)
  upper <- apply(X0, 2, max)
  noise <- sapply(seq_len(ncol(X0)), function(j) runif(m, lower[j], upper[j]))
  X <- rbind(X0, noise)
  n <- nrow(X)
  d <- ncol(X)
  V <- prod(apply(X, 2, function(column) diff(range(column))))
  cls <- c(hclass(hc(X0, modelName = "VVV"), G), rep(G + 1L, m))
  z <- unmap(cls)
  models <- list()
  for (model in NOISE_MODELS) {
    entry <- list(n_parameters = nMclustParams(model, d, G, noise = TRUE))
    for (what in c("fixed", "converged")) {
      control <- if (what == "fixed") FIXED else CONVERGED
      fit <- me(X, model, z, control = control, Vinv = 1 / V, warn = FALSE)
      if (is.na(fit$loglik)) stop("noise fit failed: ", model)
      iterations <- abs(as.numeric(unlist(attr(fit, "info")))[1])
      entry[[what]] <- c(
        list(loglik = fit$loglik, bic = bic(model, fit$loglik, n, d, G, noise = TRUE), iterations = iterations),
        params_json(fit$parameters, G)
      )
    }
    models[[model]] <- entry
  }
  list(
    name = "faithful_noise",
    source = "R datasets::faithful, then 27 rows runif() in its bounding box after set.seed(23)",
    mclust_version = as.character(packageVersion("mclust")),
    n_fixed = N_FIXED,
    inner_tol = INNER_TOL,
    converged_tol = CONVERGED_TOL,
    G = G,
    X = rows(X),
    volume = V,
    start_rule = "hc(faithful, 'VVV') classes for faithful's rows, G + 1 (noise) for the added rows",
    start_class = as.integer(cls),
    models = models
  )
}

write_reference(noise_reference(), "faithful_noise.json")

# -- partial labels (MclustSSC) --------------------------------------------------
#
# iris with 10 rows of each species labelled (seed 23), the rest NA.
# MclustSSC.fit starts from z = one-hot rows for the labelled rows and 1 / G for
# the others, then repeats: M-step; E-step; labelled rows' z reset to their
# one-hot rows; loglik of the M-step's parameters, which is
#   sum over unlabelled rows of log sum_k pro_k phi_k(x_i)
#   + sum over labelled rows of log(pro_c phi_c(x_i)), c the row's class;
# until the loglik rises by at most control$tol[1] or itmax[1] iterations.  It
# returns the last M-step's parameters, that loglik and
# bic = 2 loglik - df log(n), df = (G - 1) + d G + nVarParams(model, d, G).
# "fixed": exactly N_FIXED iterations (tol[1] = -Inf, a control list that
# emControl would refuse, so no stopping rule is involved); "converged": until
# the loglik no longer rises (tol[1] = 0).

SSC_MODELS <- c("VVV", "EEE", "VEV", "VII", "EVE")

ssc_reference <- function() {
  X <- unname(as.matrix(iris[, 1:4]))
  species <- as.integer(iris$Species)
  n <- nrow(X)
  d <- ncol(X)
  G <- 3L
  set.seed(23)
  labelled <- sort(unlist(lapply(split(seq_len(n), species), function(rows) sample(rows, 10))))
  class <- rep(NA_integer_, n)
  class[labelled] <- species[labelled]
  models <- list()
  for (model in SSC_MODELS) {
    entry <- list(n_parameters = nMclustParams(model, d, G))
    for (what in c("fixed", "converged")) {
      control <- if (what == "fixed") {
        list(eps = .Machine$double.eps, tol = c(-Inf, INNER_TOL), itmax = c(N_FIXED, INNER_MAX), equalPro = FALSE)
      } else {
        emControl(tol = c(0, INNER_TOL), itmax = c(BIG, INNER_MAX))
      }
      # verbose prints one line per iteration: they are counted.
      trace <- capture.output(
        fit <- mclust:::MclustSSC.fit(X, class, G = G, modelName = model, control = control, verbose = TRUE)
      )
      iterations <- sum(grepl("^iter =", trace))
      mixture_loglik <- sum(do.call("dens", c(list(data = X, logarithm = TRUE), fit)))
      entry[[what]] <- c(
        list(loglik = fit$loglik, bic = fit$bic, df = fit$df, mixture_loglik = mixture_loglik, iterations = iterations),
        params_json(fit$parameters, G)
      )
    }
    models[[model]] <- entry
  }
  start <- matrix(1 / G, n, G)
  start[labelled, ] <- 0
  start[cbind(labelled, species[labelled])] <- 1
  list(
    name = "iris_ssc",
    source = "R datasets::iris[, 1:4], 10 rows of each species labelled after set.seed(23)",
    mclust_version = as.character(packageVersion("mclust")),
    n_fixed = N_FIXED,
    inner_tol = INNER_TOL,
    converged_tol = CONVERGED_TOL,
    G = G,
    X = rows(X),
    class = class,
    start_rule = "MclustSSC.fit: one-hot rows for the labelled rows, 1 / G for the others; M-step first",
    models = models
  )
}

write_reference(ssc_reference(), "iris_ssc.json")
