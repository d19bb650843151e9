package dbcopy

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/feedmq/feedmq/auth"
)

// maxDiffs bounds what Diff reports: past it a damaged copy is damaged.
const maxDiffs = 20

// Diff compares what a and b hold and returns the differences found, none
// when they hold the same. Times are compared to the microsecond, the
// precision PostgreSQL keeps.
func Diff(ctx context.Context, a, b Source, batch int) ([]string, error) {
	if batch <= 0 {
		batch = 1000
	}
	var diffs []string
	add := func(format string, args ...any) {
		if len(diffs) < maxDiffs {
			diffs = append(diffs, fmt.Sprintf(format, args...))
		}
	}
	ca, err := a.ListChannels(ctx)
	if err != nil {
		return nil, err
	}
	cb, err := b.ListChannels(ctx)
	if err != nil {
		return nil, err
	}
	if len(ca) != len(cb) {
		add("%d channels, %d in the copy", len(ca), len(cb))
	}
	for i := 0; i < min(len(ca), len(cb)); i++ {
		x, y := *ca[i], *cb[i]
		x.CreatedAt, x.UpdatedAt = usec(x.CreatedAt), usec(x.UpdatedAt)
		y.CreatedAt, y.UpdatedAt = usec(y.CreatedAt), usec(y.UpdatedAt)
		if !reflect.DeepEqual(x, y) {
			// Names only: the values include API keys, which end up in logs.
			add("channel %d: %s differ in the copy", x.ID, strings.Join(fieldsDiffering(x, y), ", "))
			continue
		}
		if err := diffFeed(ctx, a, b, x.ID, batch, add); err != nil {
			return nil, err
		}
	}
	da, err := a.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	db, err := b.ListDevices(ctx)
	if err != nil {
		return nil, err
	}
	if len(da) != len(db) {
		add("%d devices, %d in the copy", len(da), len(db))
	}
	for i := 0; i < min(len(da), len(db)); i++ {
		x, y := *da[i], *db[i]
		x.CreatedAt, x.UpdatedAt = usec(x.CreatedAt), usec(x.UpdatedAt)
		y.CreatedAt, y.UpdatedAt = usec(y.CreatedAt), usec(y.UpdatedAt)
		if !reflect.DeepEqual(x, y) {
			// Names only: the values include the password hash.
			add("device %d: %s differ in the copy", x.ID, strings.Join(fieldsDiffering(x, y), ", "))
		}
	}
	ba, err := a.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	bb, err := b.Bindings(ctx)
	if err != nil {
		return nil, err
	}
	if len(ba) != len(bb) {
		add("%d bindings, %d in the copy", len(ba), len(bb))
	}
	for i := 0; i < min(len(ba), len(bb)); i++ {
		x, y := ba[i], bb[i]
		x.Created, y.Created = usec(x.Created), usec(y.Created)
		if x != y {
			add("binding %d: %+v, in the copy %+v", x.ID, x, y)
		}
	}
	aa, err := a.Account(ctx)
	if err != nil {
		return nil, err
	}
	ab, err := b.Account(ctx)
	if err != nil {
		return nil, err
	}
	if aa.UserAPIKey != ab.UserAPIKey || aa.PasswordHash != ab.PasswordHash || !usecUp(aa.PasswordChangedAt).Equal(usecUp(ab.PasswordChangedAt)) {
		add("the owner account differs in the copy")
	}
	ra1, re1, err := a.SharedRules(ctx)
	if err != nil {
		return nil, err
	}
	ra2, re2, err := b.SharedRules(ctx)
	if err != nil {
		return nil, err
	}
	if !sameRules(ra1, ra2) || !sameRules(re1, re2) {
		add("shared access rules: %v %v, in the copy %v %v", ra1, re1, ra2, re2)
	}
	la, err := a.IDCounters(ctx)
	if err != nil {
		return nil, err
	}
	lb, err := b.IDCounters(ctx)
	if err != nil {
		return nil, err
	}
	if la != lb {
		add("last IDs %+v, in the copy %+v", la, lb)
	}
	return diffs, nil
}

func diffFeed(ctx context.Context, a, b Source, ch uint64, batch int, add func(string, ...any)) error {
	var after uint64
	for {
		ea, err := a.EntriesAfter(ctx, ch, after, batch)
		if err != nil {
			return err
		}
		eb, err := b.EntriesAfter(ctx, ch, after, batch)
		if err != nil {
			return err
		}
		if len(ea) != len(eb) {
			add("channel %d: %d entries after %d, %d in the copy", ch, len(ea), after, len(eb))
			return nil
		}
		for i := range ea {
			x, y := ea[i], eb[i]
			x.CreatedAt, y.CreatedAt = x.CreatedAt.UTC(), y.CreatedAt.UTC()
			if x != y {
				add("channel %d entry %d: %+v, in the copy %+v", ch, x.ID, x, y)
				return nil
			}
		}
		if len(ea) < batch {
			return nil
		}
		after = ea[len(ea)-1].ID
	}
}

// fieldsDiffering names the fields of two structs of one type that differ.
func fieldsDiffering(a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var names []string
	for i := 0; i < va.NumField(); i++ {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			names = append(names, va.Type().Field(i).Name)
		}
	}
	return names
}

func sameRules(a, b []auth.Rule) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

// usecUp is t in UTC rounded up to the microsecond, as the PostgreSQL
// store keeps the account's password stamp (rounding down could let a
// session from before a password change outlive it).
func usecUp(t time.Time) time.Time {
	u := usec(t)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}

// usec is t in UTC to the microsecond; the zero time stays zero.
func usec(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
