"""The nightly stage: mirror health, the comparison of two nights, and the regression gate."""
