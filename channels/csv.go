package channels

// CSVCell returns s as it goes into a CSV cell. Spreadsheets evaluate a
// cell that starts with =, +, - or @ (or with a tab or carriage return
// before one) as a formula, so such a value gets a leading single quote,
// which makes them show it as text. Decimal numbers (IsDecimal: -2.5, +3)
// are left alone: they cannot be formulas, and negative readings are
// ordinary sensor values.
func CSVCell(s string) string {
	if s == "" || IsDecimal(s) {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}
