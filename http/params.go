package httpd

import (
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/feedmq/feedmq/channels"
)

// readParams are the query parameters of a read (REFERENCE §2.3).
type readParams struct {
	// limit is how many of the newest matching entries to return; 0
	// returns none (results=0).
	limit int
	// start and end bound created_at, inclusive; a zero start is open,
	// and end is now unless the read gives one.
	start, end time.Time
	// loc is the zone of output timestamps and of start and end without
	// their own zone; nil means UTC, written with "Z".
	loc *time.Location
	// status and location add the status and latitude, longitude and
	// elevation values to each entry.
	status, location bool
	// callback is the JSONP function name, or "".
	callback string
	// metadata adds the channel's metadata to the channel object.
	metadata bool
	// rows are the aggregation, min/max filter and rounding asked for;
	// its Cols are set per route (columns).
	rows channels.RowOptions
}

// statusWindow sets the window of a status read, which ThingSpeak reads
// as if days=1 were given: the last day unless days, minutes or start say
// otherwise, and up to 8000 entries unless results says otherwise.
func (p *readParams) statusWindow(q url.Values, now time.Time) {
	if q.Get("results") == "" {
		p.limit = MaxResults
	}
	if q.Get("start") == "" && q.Get("days") == "" && q.Get("minutes") == "" {
		p.start = now.Add(-24 * time.Hour)
	}
}

// Upper bounds of days= and minutes=: anything larger reaches back past
// 1970 anyway, and the durations must not overflow.
const (
	maxDays    = 100_000
	maxMinutes = 100_000_000
)

// maxDefaultSpan is the longest window minutes= opens without results,
// days or start, as on ThingSpeak.
const maxDefaultSpan = 30 * 24 * time.Hour

// MaxBucketRows bounds the rows of an aggregated read, empty buckets
// included: a year of 10-minute buckets fits, two entries decades apart
// in 10-minute buckets do not.
const MaxBucketRows = 100_000

// aggregateParams are the bucket parameters in order of precedence: when
// a read names several, the first one counts (the others are still
// checked).
var aggregateParams = [...]channels.AggregateKind{channels.Timescale, channels.Sum, channels.Average, channels.Median}

// parseReadParams reads the query of a read request. now is the current
// time, for days and minutes. Errors are *apiError values (400).
//
//   - results: 0..8000 entries (larger values mean 8000). Without results,
//     a read returns the newest 100 entries, or up to 8000 when days,
//     start or end is given (as ThingSpeak: minutes does not raise it).
//   - Without results, days, start or minutes, only entries of the last 24
//     hours are read (ThingSpeak's default window); minutes alone reaches
//     back at most 30 days. results, days or start open the window.
//   - start, end: "YYYY-MM-DD HH:NN:SS" (or ISO 8601, see parseTime),
//     inclusive; without a zone they are read in timezone/offset, else UTC.
//     end defaults to now, so entries dated ahead are left out.
//   - minutes, days: only entries from that many minutes or days before
//     now. start beats minutes, which beats days.
//   - timezone: an IANA zone name (Europe/Berlin); offset: hours east of
//     UTC (-14..14, decimals allowed: 5.5). timezone beats offset. Either
//     makes timestamps carry a numeric offset instead of Z.
//   - status, location: true adds those values to each entry.
//   - callback: a JavaScript function name; JSON is then sent as JSONP.
//   - timescale, sum, average, median: a bucket width (parseShape).
//   - round: decimals; min, max: numbers that drop rows (parseShape).
func parseReadParams(q url.Values, now time.Time, zones *zoneCache) (readParams, error) {
	var p readParams
	var err error
	if p.loc, err = parseZoneParams(q, zones); err != nil {
		return p, err
	}
	if err := parseShape(q, &p); err != nil {
		return p, err
	}
	window := false // days, start or end given: the cap is 8000
	minutes := false
	if s := q.Get("start"); s != "" {
		if p.start, err = parseTime(s, p.loc); err != nil {
			return p, badRequest("start: " + err.Error())
		}
		window = true
	} else if s := q.Get("minutes"); s != "" {
		n, err := parseCount(s, maxMinutes)
		if err != nil {
			return p, badRequest("minutes must be a whole number of minutes, such as 60.")
		}
		p.start, minutes = now.Add(-time.Duration(n)*time.Minute), true
	} else if s := q.Get("days"); s != "" {
		n, err := parseCount(s, maxDays)
		if err != nil {
			return p, badRequest("days must be a whole number of days, such as 7.")
		}
		p.start, window = now.Add(-time.Duration(n)*24*time.Hour), true
	}
	if s := q.Get("end"); s != "" {
		if p.end, err = parseTime(s, p.loc); err != nil {
			return p, badRequest("end: " + err.Error())
		}
		window = true
	}
	if p.end.IsZero() {
		// As ThingSpeak's, a read ends now unless end says otherwise:
		// an entry dated ahead (a device clock years fast) waits for
		// its time instead of stretching every read up to it.
		p.end = now
	}
	p.limit = DefaultResults
	if window {
		p.limit = MaxResults
	}
	if q.Get("results") == "" && q.Get("start") == "" && q.Get("days") == "" {
		// ThingSpeak's default window: the last day, or what minutes
		// asks for up to 30 days before the end.
		switch {
		case !minutes:
			p.start = now.Add(-24 * time.Hour)
		case p.end.Sub(p.start) > maxDefaultSpan:
			p.start = p.end.Add(-maxDefaultSpan)
		}
	}
	if s := q.Get("results"); s != "" {
		if p.limit, err = parseCount(s, MaxResults); err != nil {
			return p, badRequest("results must be a whole number from 0 to 8000.")
		}
	}
	if p.status, err = parseBool(q, "status"); err != nil {
		return p, err
	}
	if p.location, err = parseBool(q, "location"); err != nil {
		return p, err
	}
	if p.metadata, err = parseBool(q, "metadata"); err != nil {
		return p, err
	}
	if p.callback = q.Get("callback"); p.callback != "" && !validCallback(p.callback) {
		return p, badRequest("callback must be a JavaScript function name such as myCallback.")
	}
	return p, nil
}

// parseShape reads the parameters that shape rows:
//
//   - timescale, sum, average, median: 10, 15, 20, 30, 60, 240, 720 or
//     1440 minutes, or daily (calendar days in timezone/offset). Entries
//     are folded into buckets of that width; timescale beats sum, which
//     beats average, which beats median.
//   - round: 0..MaxRound decimals for numeric field values.
//   - min, max: a row whose shown fields hold a number below min or
//     above max is dropped (after aggregation, before rounding).
func parseShape(q url.Values, p *readParams) error {
	p.rows.Round = -1
	for _, kind := range aggregateParams {
		name := kind.String()
		s := q.Get(name)
		if s == "" {
			continue
		}
		b, ok := channels.ParseBucket(s)
		if !ok {
			return badRequest(name + " must be 10, 15, 20, 30, 60, 240, 720 or 1440 (minutes), or daily.")
		}
		if p.rows.Kind == channels.NoAggregate {
			b.Loc = p.loc
			p.rows.Kind, p.rows.Bucket = kind, b
			p.rows.MaxRows = MaxBucketRows
		}
	}
	if s := q.Get("round"); s != "" {
		n, err := parseCount(s, channels.MaxRound+1)
		if err != nil || n > channels.MaxRound {
			return badRequest("round must be a whole number of decimals from 0 to " + strconv.Itoa(channels.MaxRound) + ".")
		}
		p.rows.Round = n
	}
	for _, name := range [...]string{"min", "max"} {
		s := q.Get(name)
		if s == "" {
			continue
		}
		x, ok := channels.ParseFilterNumber(s)
		if !ok || math.IsInf(x, 0) {
			return badRequest(name + " must be a number, such as 20 or -2.5.")
		}
		if name == "min" {
			p.rows.Filter.Min, p.rows.Filter.HasMin = x, true
		} else {
			p.rows.Filter.Max, p.rows.Filter.HasMax = x, true
		}
	}
	return nil
}

// parseZoneParams returns the zone that timezone or offset names, or nil.
func parseZoneParams(q url.Values, zones *zoneCache) (*time.Location, error) {
	if name := q.Get("timezone"); name != "" {
		loc, err := zones.load(name)
		if err != nil {
			return nil, badRequest("timezone must be an IANA time zone name such as Europe/Berlin or America/New_York.")
		}
		return loc, nil
	}
	if s := q.Get("offset"); s != "" {
		loc, ok := parseOffset(s)
		if !ok {
			return nil, badRequest("offset must be a number of hours from -14 to 14, such as -5 or 5.5.")
		}
		return loc, nil
	}
	return nil, nil
}

// parseOffset parses a UTC offset in hours, with optional sign and
// decimals, into a fixed zone. It keeps whole minutes.
func parseOffset(s string) (*time.Location, bool) {
	if len(s) > 21 || !channels.IsDecimal(s) {
		return nil, false
	}
	h, err := strconv.ParseFloat(s, 64)
	if err != nil || math.Abs(h) > 14 {
		return nil, false
	}
	minutes := int(math.Round(h * 60))
	return time.FixedZone("", minutes*60), true
}

// parseCount parses a non-negative whole number; values above max, however
// long, become max.
func parseCount(s string, max int) (int, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	if s == "" {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > uint64(max) { // only ErrRange is possible here
		return max, nil
	}
	return int(n), nil
}

func parseBool(q url.Values, name string) (bool, error) {
	s := q.Get(name)
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return false, badRequest(name + " must be true or false.")
	}
	return v, nil
}

// validCallback accepts a JavaScript identifier path of at most 64
// characters (letters, digits, _, $ and dots), which cannot inject code.
func validCallback(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == '$':
		case (c >= '0' && c <= '9' || c == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

// timeError is a message about a malformed start or end.
type timeError string

func (e timeError) Error() string { return string(e) }

const errTimeSyntax = timeError(`must look like "2024-12-31 23:59:59" or "2024-12-31T23:59:59Z" ` +
	`(the time and a zone such as +01:00 are optional).`)

// parseTime parses a start or end parameter: a date "YYYY-MM-DD",
// optionally followed by " " or "T" and "HH:MM" or "HH:MM:SS" with
// optional fractional seconds, then an optional zone: "Z", "+hh:mm",
// "+hhmm", "+hh" (or with "-"), or " UTC". A space before hh:mm or hhmm
// counts as "+", since that is what an unescaped + in a URL becomes. A
// zone needs a time. Without a zone the time is read in loc (nil means
// UTC).
func parseTime(s string, loc *time.Location) (time.Time, error) {
	if loc == nil {
		loc = time.UTC
	}
	if rest, ok := strings.CutSuffix(s, " UTC"); ok {
		s, loc = rest, time.UTC
	}
	if len(s) < len("2006-01-02") || s[4] != '-' || s[7] != '-' {
		return time.Time{}, errTimeSyntax
	}
	year, ok1 := digits(s[0:4])
	month, ok2 := digits(s[5:7])
	day, ok3 := digits(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return time.Time{}, errTimeSyntax
	}
	s = s[10:]
	var hour, minute, sec, nsec int
	withTime := s != "" && (s[0] == ' ' || s[0] == 'T' || s[0] == 't') && len(s) >= len("T15:04") && s[3] == ':'
	if withTime {
		var ok4, ok5 bool
		hour, ok4 = digits(s[1:3])
		minute, ok5 = digits(s[4:6])
		if !ok4 || !ok5 {
			return time.Time{}, errTimeSyntax
		}
		s = s[6:]
		if len(s) >= 3 && s[0] == ':' {
			var ok6 bool
			if sec, ok6 = digits(s[1:3]); !ok6 {
				return time.Time{}, errTimeSyntax
			}
			s = s[3:]
			if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
				i := 1
				for ; i < len(s) && isDigit(s[i]); i++ {
					if i <= 9 {
						nsec = nsec*10 + int(s[i]-'0')
					}
				}
				for j := min(i, 10); j <= 9; j++ {
					nsec *= 10
				}
				s = s[i:]
			}
		}
	}
	if month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, timeError("is not a valid date and time.")
	}
	if s != "" {
		offset, ok := parseZone(s)
		if !ok || !withTime {
			return time.Time{}, errTimeSyntax
		}
		loc = time.FixedZone("", offset)
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	if t.Day() != day {
		return time.Time{}, timeError("is not a valid date: " + time.Month(month).String() + " has no day " + strconv.Itoa(day) + ".")
	}
	return t, nil
}

// parseZone parses "Z", "+hh:mm", "+hhmm", "+hh", the same with "-", or
// " hh:mm" and " hhmm" for "+", into seconds east of UTC.
func parseZone(z string) (int, bool) {
	if z == "Z" || z == "z" {
		return 0, true
	}
	sign := 1
	switch z[0] {
	case '+':
	case ' ': // an unescaped +; only before a full hh:mm or hhmm
		if len(z) < len(" hhmm") {
			return 0, false
		}
	case '-':
		sign = -1
	default:
		return 0, false
	}
	z = z[1:]
	var mm string
	switch {
	case len(z) == 2:
		mm = "00"
	case len(z) == 4:
		mm = z[2:]
	case len(z) == 5 && z[2] == ':':
		mm = z[3:]
	default:
		return 0, false
	}
	h, ok1 := digits(z[:2])
	m, ok2 := digits(mm)
	if !ok1 || !ok2 || h > 23 || m > 59 {
		return 0, false
	}
	return sign * (h*3600 + m*60), true
}

// digits parses a fixed-width run of decimal digits.
func digits(s string) (int, bool) {
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

// zoneCache loads IANA time zones by name and keeps the ones found, so
// that a zone file is read once. Only valid names are kept, so the cache
// is bounded by the zone database.
type zoneCache struct {
	m sync.Map // name -> *time.Location
}

// maxZoneName bounds a zone name; the longest IANA name is about 30.
const maxZoneName = 64

func (z *zoneCache) load(name string) (*time.Location, error) {
	if v, ok := z.m.Load(name); ok {
		return v.(*time.Location), nil
	}
	if !validZoneName(name) {
		return nil, timeError("unknown time zone")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	z.m.Store(name, loc)
	return loc, nil
}

// validZoneName accepts names built like IANA zone names (letters, digits,
// _, +, - and /, no empty or dot components) and refuses "Local", which
// would expose the server's zone.
func validZoneName(name string) bool {
	if name == "" || len(name) > maxZoneName || strings.EqualFold(name, "local") {
		return false
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-') {
				return false
			}
		}
	}
	return true
}
