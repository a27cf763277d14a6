"""pagoPA: debt positions, notices, receipts, reconciliation, campaigns."""
