"""The operations console: a signed-in web application to see and fix what is wrong (``flexsync console``)."""
