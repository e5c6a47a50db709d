"""What a run makes: diagnostics, the export, gridded emissivity, classic SIC algorithms, plots."""
