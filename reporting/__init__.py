"""Reading finished runs: summary tables, the HTML report with its figures, and readable samples."""
