package channels

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// AggregateKind says how a feed read folds entries into time buckets.
type AggregateKind uint8

// Aggregations, in the order of precedence when a read names several:
// timescale beats sum, which beats average, which beats median.
const (
	NoAggregate AggregateKind = iota
	Timescale                 // the first entry of each bucket
	Sum                       // per field, the sum of its numbers
	Average                   // per field, the mean of its numbers
	Median                    // per field, the median of its numbers
)

var aggregateNames = [...]string{"", "timescale", "sum", "average", "median"}

// String returns the query parameter that asks for k ("" for none).
func (k AggregateKind) String() string {
	if int(k) < len(aggregateNames) {
		return aggregateNames[k]
	}
	return ""
}

// BucketMinutes are the bucket widths a read may ask for, in minutes.
var BucketMinutes = [...]int{10, 15, 20, 30, 60, 240, 720, 1440}

// Bucket is the width of an aggregation's time buckets.
type Bucket struct {
	// Minutes is the width of a bucket; buckets start at multiples of
	// it counted from the Unix epoch (00:00 UTC), whatever the zone of
	// the output, as ThingSpeak floors times. 0 with Daily.
	Minutes int
	// Daily buckets are calendar days in Loc, from local midnight to
	// the next (23 or 25 hours across a daylight saving change).
	Daily bool
	Loc   *time.Location // nil means UTC
}

// ParseBucket parses a timescale, sum, average or median value: one of
// BucketMinutes written in decimal digits, or "daily".
func ParseBucket(s string) (Bucket, bool) {
	if s == "daily" {
		return Bucket{Daily: true}, true
	}
	if s == "" || len(s) > 8 {
		return Bucket{}, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return Bucket{}, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if !slices.Contains(BucketMinutes[:], n) {
		return Bucket{}, false
	}
	return Bucket{Minutes: n}, true
}

func (b Bucket) loc() *time.Location {
	if b.Loc == nil {
		return time.UTC
	}
	return b.Loc
}

// Start returns the start of the bucket holding t.
func (b Bucket) Start(t time.Time) time.Time {
	if b.Daily {
		loc := b.loc()
		y, m, d := t.In(loc).Date()
		s := time.Date(y, m, d, 0, 0, 0, 0, loc)
		if s.After(t) {
			// Midnight did not exist that day (a clock change at 00:00)
			// and was normalised past t: the day began at t's hour.
			s = t.Truncate(time.Hour)
		}
		return s
	}
	w := int64(b.Minutes) * 60
	if w <= 0 {
		return t
	}
	sec := t.Unix()
	floor := sec - sec%w
	if sec%w < 0 {
		floor -= w
	}
	return time.Unix(floor, 0).UTC()
}

// Next returns the start of the bucket after the one starting at start.
func (b Bucket) Next(start time.Time) time.Time {
	if b.Daily {
		loc := b.loc()
		// Noon is safely inside start's day, whatever the clock did at
		// midnight.
		y, m, d := start.In(loc).Add(12 * time.Hour).Date()
		n := time.Date(y, m, d+1, 0, 0, 0, 0, loc)
		if !n.After(start) {
			n = start.Add(24 * time.Hour)
		}
		return n
	}
	return start.Add(time.Duration(max(b.Minutes, 1)) * time.Minute)
}

// Count returns how many buckets run from the one holding first to the
// one holding last, both included (0 when last is before first).
func (b Bucket) Count(first, last time.Time) int64 {
	if last.Before(first) {
		return 0
	}
	if b.Daily {
		loc := b.loc()
		day := func(t time.Time) int64 {
			y, m, d := t.In(loc).Date()
			return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400
		}
		return day(last) - day(first) + 1
	}
	w := int64(max(b.Minutes, 1)) * 60
	return (b.Start(last).Unix()-b.Start(first).Unix())/w + 1
}

// ValueFilter keeps rows by their field values: a row is dropped when
// any field it shows holds a number below Min or above Max. Values that
// are not numbers, and unset fields, never drop a row.
type ValueFilter struct {
	Min, Max       float64
	HasMin, HasMax bool
}

// Keep reports whether row e, showing the values cols, passes f.
func (f *ValueFilter) Keep(e *Entry, cols []int) bool {
	if !f.HasMin && !f.HasMax {
		return true
	}
	for _, c := range cols {
		if c >= NumFields {
			continue
		}
		v, ok := e.Value(c)
		if !ok {
			continue
		}
		x, ok := ParseFilterNumber(v)
		if !ok {
			continue
		}
		if (f.HasMin && x < f.Min) || (f.HasMax && x > f.Max) {
			return false
		}
	}
	return true
}

// ParseFilterNumber parses a number as min and max compare values and as
// the min and max parameters are written: surrounding white space, an
// optional sign, digits with an optional fraction (or just a fraction,
// ".5"), and an optional exponent. A decimal comma is not a number here.
func ParseFilterNumber(s string) (float64, bool) {
	s = strings.Trim(s, " \t\n\v\f\r")
	if s == "" || len(s) > 64 {
		return 0, false
	}
	i := 0
	if s[0] == '+' || s[0] == '-' {
		i++
	}
	intDigits := countDigits(s[i:])
	i += intDigits
	fracDigits := 0
	if i < len(s) && s[i] == '.' {
		fracDigits = countDigits(s[i+1:])
		if fracDigits == 0 {
			return 0, false // "5." is not a number
		}
		i += 1 + fracDigits
	}
	if intDigits == 0 && fracDigits == 0 {
		return 0, false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		n := countDigits(s[j:])
		if n == 0 {
			return 0, false
		}
		i = j + n
	}
	if i != len(s) {
		return 0, false
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(x, 0) {
		return 0, false
	}
	return x, true
}

func countDigits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// aggregateNumber parses a field value the way aggregation and rounding
// read numbers: after trimming white space, an optional sign, digits, and
// optionally a point or a comma followed by digits ("21.5", "-3",
// "21,5"). comma reports a decimal comma, which the answer then keeps.
// Exponents, ".5" and "5." are not numbers; such values are skipped.
func aggregateNumber(s string) (x float64, comma, ok bool) {
	s = strings.Trim(s, " \t\n\v\f\r")
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := countDigits(s[i:])
	if n == 0 {
		return 0, false, false
	}
	i += n
	if i < len(s) && (s[i] == '.' || s[i] == ',') {
		comma = s[i] == ','
		f := countDigits(s[i+1:])
		if f == 0 {
			return 0, false, false
		}
		i += 1 + f
	}
	if i != len(s) {
		return 0, false, false
	}
	if comma {
		s = strings.Replace(s, ",", ".", 1)
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil && !math.IsInf(x, 0) { // a 400-digit number is ±Inf
		return 0, false, false
	}
	return x, comma, true
}

// FormatAggregate writes an aggregated number: with round >= 0 with that
// many decimals ("%.Nf", half-way cases as the binary value falls), else
// as the shortest decimal that reads back as x, always with a point
// ("3.0", "0.1", "1.0e+16", "1.0e-05"). With comma the decimal point is a
// comma.
func FormatAggregate(x float64, round int, comma bool) string {
	var s string
	if round >= 0 {
		s = formatFixed(x, round)
	} else {
		s = formatShortest(x)
	}
	if comma {
		s = strings.ReplaceAll(s, ".", ",")
	}
	return s
}

func formatFixed(x float64, round int) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(x, 'f', round, 64)
}

// formatShortest writes x with the fewest digits that read back as x: in
// positional notation when its decimal exponent is from -4 to 15 (always
// with a fraction, "3.0"), else as d.ddde±XX.
func formatShortest(x float64) string {
	switch {
	case math.IsNaN(x):
		return "NaN"
	case math.IsInf(x, 1):
		return "Infinity"
	case math.IsInf(x, -1):
		return "-Infinity"
	}
	if x == 0 {
		if math.Signbit(x) {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(x, 'e', -1, 64) // "-1.2345e+06"
	sign := ""
	if e[0] == '-' {
		sign, e = "-", e[1:]
	}
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	p, _ := strconv.Atoi(exp)
	decpt := p + 1 // digits before the point
	var b strings.Builder
	b.WriteString(sign)
	switch {
	case decpt > 0 && decpt <= 16:
		if decpt >= len(digits) {
			b.WriteString(digits)
			b.WriteString(strings.Repeat("0", decpt-len(digits)))
			b.WriteString(".0")
		} else {
			b.WriteString(digits[:decpt])
			b.WriteByte('.')
			b.WriteString(digits[decpt:])
		}
	case decpt <= 0 && decpt > -4:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -decpt))
		b.WriteString(digits)
	default:
		b.WriteByte(digits[0])
		b.WriteByte('.')
		if len(digits) > 1 {
			b.WriteString(digits[1:])
		} else {
			b.WriteByte('0')
		}
		b.WriteByte('e')
		if p < 0 {
			b.WriteByte('-')
			p = -p
		} else {
			b.WriteByte('+')
		}
		if p < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.Itoa(p))
	}
	return b.String()
}

// RoundValue rounds a field value that is a number (as aggregation reads
// numbers, decimal comma included) to round decimals, keeping its comma;
// other values come back unchanged.
func RoundValue(v string, round int) string {
	x, comma, ok := aggregateNumber(v)
	if !ok || round < 0 {
		return v
	}
	return FormatAggregate(x, round, comma)
}

// MaxRound is the largest number of decimals round= may ask for.
const MaxRound = 30

// RowOptions shape the rows of a feed read.
type RowOptions struct {
	Kind   AggregateKind
	Bucket Bucket
	// Cols are the value indexes each row shows: fields are aggregated,
	// filtered and rounded; latitude, longitude, elevation and status
	// are kept by Timescale (from the bucket's first entry) and unset
	// in the other aggregations.
	Cols []int
	// Round is the number of decimals numbers are rounded to; -1 keeps
	// them as stored.
	Round  int
	Filter ValueFilter
	// MaxRows bounds the rows of an aggregation, empty buckets
	// included; 0 means no bound.
	MaxRows int64
}

// Shaped reports whether the options change rows at all.
func (o *RowOptions) Shaped() bool {
	return o.Kind != NoAggregate || o.Round >= 0 || o.Filter.HasMin || o.Filter.HasMax
}

// ErrTooManyRows is returned by Rows.Add when an aggregation would
// exceed RowOptions.MaxRows.
var ErrTooManyRows = Errorf(EINVALID, "the aggregation has too many buckets")

// rowBatch is how many rows Rows hands to emit at a time.
const rowBatch = 64

// Rows turns entries, oldest first, into the rows of a read: entries as
// they are, or one row per bucket from the first entry's bucket to the
// last's, empty buckets included (created_at the bucket's start, every
// value unset). It then drops rows that fail the value filter and rounds.
// An aggregated row has no entry_id (ID 0) and created_at at the start
// of its bucket. Only the current bucket is held: for Median its numbers,
// for the others a running sum and count per field.
//
// Entries whose created_at falls before the current bucket are counted
// in the current bucket, so callers hand entries in created_at order (the
// HTTP reads do), not in entry_id order, which a back-dated entry breaks.
type Rows struct {
	opt   RowOptions
	emit  func([]Entry)
	batch []Entry

	open     bool
	start    time.Time
	first    Entry // Timescale: the bucket's first entry
	hasFirst bool
	sum      [NumFields]float64
	count    [NumFields]int
	vals     [NumFields][]float64
	// comma is set once a number with a decimal comma has been seen, so
	// that later aggregates are written with commas too.
	comma bool
	rows  int64
}

// NewRows returns a Rows that passes finished rows to emit, a batch at a
// time; the slice is valid only during the call.
func NewRows(opt RowOptions, emit func([]Entry)) *Rows {
	return &Rows{opt: opt, emit: emit, batch: make([]Entry, 0, rowBatch)}
}

// Add takes the next entries. It returns ErrTooManyRows once the
// aggregation needs more than MaxRows rows.
func (r *Rows) Add(es []Entry) error {
	for i := range es {
		if err := r.add(&es[i]); err != nil {
			return err
		}
	}
	return nil
}

func (r *Rows) add(e *Entry) error {
	if r.opt.Kind == NoAggregate {
		r.finish(e, false)
		return nil
	}
	s := r.opt.Bucket.Start(e.CreatedAt)
	switch {
	case !r.open:
		if err := r.count1(); err != nil {
			return err
		}
		r.open, r.start = true, s
	case s.After(r.start):
		// Refuse a jump past MaxRows before its empty rows go out.
		if r.opt.MaxRows > 0 && r.rows+r.opt.Bucket.Count(r.start, s)-1 > r.opt.MaxRows {
			return ErrTooManyRows
		}
		r.closeBucket()
		for n := r.opt.Bucket.Next(r.start); n.Before(s); n = r.opt.Bucket.Next(n) {
			if err := r.count1(); err != nil {
				return err
			}
			r.finish(&Entry{ChannelID: e.ChannelID, CreatedAt: n}, true)
		}
		if err := r.count1(); err != nil {
			return err
		}
		r.start = s
	}
	r.accumulate(e)
	return nil
}

// count1 counts one more bucket row against MaxRows.
func (r *Rows) count1() error {
	r.rows++
	if r.opt.MaxRows > 0 && r.rows > r.opt.MaxRows {
		return ErrTooManyRows
	}
	return nil
}

func (r *Rows) accumulate(e *Entry) {
	if r.opt.Kind == Timescale {
		if !r.hasFirst {
			r.first, r.hasFirst = *e, true
		}
		return
	}
	for _, c := range r.opt.Cols {
		if c >= NumFields {
			continue
		}
		v, ok := e.Value(c)
		if !ok {
			continue
		}
		x, comma, ok := aggregateNumber(v)
		if !ok {
			continue
		}
		r.comma = r.comma || comma
		if r.opt.Kind == Median {
			r.vals[c] = append(r.vals[c], x)
		} else {
			r.sum[c] += x
			r.count[c]++
		}
	}
}

// closeBucket finishes the open bucket's row and resets the bucket.
func (r *Rows) closeBucket() {
	row := Entry{CreatedAt: r.start}
	if r.opt.Kind == Timescale {
		row = r.first
		row.ID, row.CreatedAt = 0, r.start
		r.first, r.hasFirst = Entry{}, false
		r.finish(&row, false)
		return
	}
	for _, c := range r.opt.Cols {
		if c >= NumFields {
			continue
		}
		var x float64
		switch r.opt.Kind {
		case Median:
			v := r.vals[c]
			if len(v) == 0 {
				continue
			}
			slices.Sort(v)
			if n := len(v); n%2 == 0 {
				x = (v[n/2-1] + v[n/2]) / 2
			} else {
				x = v[n/2]
			}
			r.vals[c] = v[:0]
		default:
			if r.count[c] == 0 {
				continue
			}
			x = r.sum[c]
			if r.opt.Kind == Average {
				// The mean of the field's numbers. ThingSpeak's
				// open-source server divides by every entry of the
				// bucket instead, which halves a field written on
				// every other entry.
				x /= float64(r.count[c])
			}
			r.sum[c], r.count[c] = 0, 0
		}
		row.SetValue(c, FormatAggregate(x, r.opt.Round, r.comma))
	}
	r.finish(&row, true)
}

// finish filters a row, rounds it unless its numbers were written
// rounded already, and queues it.
func (r *Rows) finish(e *Entry, rounded bool) {
	if !r.opt.Filter.Keep(e, r.opt.Cols) {
		return
	}
	r.batch = append(r.batch, *e)
	row := &r.batch[len(r.batch)-1]
	if !rounded && r.opt.Round >= 0 {
		for _, c := range r.opt.Cols {
			if v, ok := row.Value(c); ok && c < NumFields {
				row.Values[c] = RoundValue(v, r.opt.Round)
			}
		}
	}
	if len(r.batch) == cap(r.batch) {
		r.flush()
	}
}

func (r *Rows) flush() {
	if len(r.batch) > 0 {
		r.emit(r.batch)
		r.batch = r.batch[:0]
	}
}

// Close finishes the last bucket and emits the rows still queued.
func (r *Rows) Close() {
	if r.open {
		r.closeBucket()
		r.open = false
	}
	r.flush()
}
