"""The write-back: payments FlexPoint collects, posted into Sage Intacct exactly once."""
