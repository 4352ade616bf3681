"""BOLD time series: the synthetic brain's scanner runs (BIDS), motion correction and single-trial GLMs that turn
them into the betas every other command reads."""
