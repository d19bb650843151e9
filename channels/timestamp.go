package channels

import "time"

// parseCreatedAt parses the created_at of a payload: a date and time
// "2006-01-02 15:04:05" or "2006-01-02T15:04:05", with optional fractional
// seconds and an optional zone "Z", "+hh:mm", "-hh:mm", "+hhmm" or "-hhmm".
// No zone means UTC. The result is UTC, truncated to the second, and lies
// in the years 1970 to 9999.
func parseCreatedAt(s string) (time.Time, error) {
	if len(s) < len("2006-01-02T15:04:05") || s[4] != '-' || s[7] != '-' ||
		(s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, badCreatedAt()
	}
	year, ok1 := atoi(s[0:4])
	month, ok2 := atoi(s[5:7])
	day, ok3 := atoi(s[8:10])
	hour, ok4 := atoi(s[11:13])
	minute, ok5 := atoi(s[14:16])
	sec, ok6 := atoi(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 {
		return time.Time{}, badCreatedAt()
	}
	offset, err := parseZone(skipFraction(s[19:]))
	if err != nil {
		return time.Time{}, err
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, payloadError("created_at %s is not a valid date and time", quoteShort(s))
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, 0, time.UTC)
	if t.Day() != day {
		return time.Time{}, payloadError("created_at %s is not a valid date: %s has no day %d", quoteShort(s), time.Month(month), day)
	}
	t = t.Add(-offset)
	if y := t.Year(); y < 1970 || y > 9999 {
		return time.Time{}, payloadError("created_at must lie in the years 1970 to 9999 (UTC)")
	}
	return t, nil
}

// skipFraction drops a leading ".ddd" from s.
func skipFraction(s string) string {
	if len(s) < 2 || s[0] != '.' || !isDigit(s[1]) {
		return s
	}
	i := 2
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[i:]
}

// parseZone parses what follows the time: "", "Z", "+hh:mm", "+hhmm" and
// the same with "-". It returns the offset east of UTC.
func parseZone(z string) (time.Duration, error) {
	switch {
	case z == "" || z == "Z":
		return 0, nil
	case len(z) > 1 && z[0] == ' ' && isDigit(z[1]):
		// A + sent unescaped in a form arrives as a space.
		return 0, payloadError("created_at has a space where the zone offset's sign should be: write + as %%2B")
	case z[0] != '+' && z[0] != '-':
		return 0, badCreatedAt()
	}
	mm := ""
	switch {
	case len(z) == len("+hh:mm") && z[3] == ':':
		mm = z[4:6]
	case len(z) == len("+hhmm"):
		mm = z[3:5]
	default:
		return 0, badCreatedAt()
	}
	h, ok1 := atoi(z[1:3])
	m, ok2 := atoi(mm)
	if !ok1 || !ok2 || h > 23 || m > 59 {
		return 0, payloadError("created_at has an invalid zone offset %q", z)
	}
	d := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
	if z[0] == '-' {
		d = -d
	}
	return d, nil
}

func badCreatedAt() error {
	return payloadError("created_at must look like 2014-12-31 23:59:59 or 2014-12-31T23:59:59Z, optionally with fractional seconds and a zone such as +01:00")
}

// atoi parses a fixed-width run of decimal digits.
func atoi(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
