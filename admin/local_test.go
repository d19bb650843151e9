package admin_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// openDB opens (or reopens) the database at path and closes it when the
// test ends. Closing twice is a no-op, so tests may close it early.
func openDB(t *testing.T, path string) *storage.DB {
	t.Helper()
	db, err := storage.Open(path, storage.Options{})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close database: %v", err)
		}
	})
	return db
}

// revokes records the device IDs passed to Local.Revoke.
type revokes struct {
	mu  sync.Mutex
	ids []uint64
}

func (r *revokes) revoke(id uint64) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	r.mu.Unlock()
}

func (r *revokes) want(t *testing.T, ids ...uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(ids) == 0 && len(r.ids) == 0 {
		return
	}
	if !reflect.DeepEqual(r.ids, ids) {
		t.Fatalf("Revoke called with %v, want %v", r.ids, ids)
	}
}

type testLocal struct {
	*admin.Local
	db      *storage.DB
	revokes *revokes
}

// newTestLocal returns a Local over a fresh database with the given
// limits, recording Revoke calls.
func newTestLocal(t *testing.T, lim auth.Limits) *testLocal {
	t.Helper()
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	s, err := admin.NewLocal(context.Background(), db, lim)
	if err != nil {
		t.Fatalf("NewLocal: %v", err)
	}
	rv := &revokes{}
	s.Revoke = rv.revoke
	return &testLocal{Local: s, db: db, revokes: rv}
}

// wantCode fails unless err carries the given domain error code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := channels.ErrorCode(err); got != code {
		t.Fatalf("error = %v (code %q), want code %q", err, got, code)
	}
}

func mustCreateChannel(t *testing.T, s *testLocal, spec auth.ChannelSpec) *channels.Channel {
	t.Helper()
	if spec.Name == "" {
		spec.Name = "channel"
	}
	c, err := s.CreateChannel(context.Background(), spec)
	if err != nil {
		t.Fatalf("CreateChannel(%+v): %v", spec, err)
	}
	return c
}

func mustCreateDevice(t *testing.T, s *testLocal, name string, grants ...auth.Grant) *auth.Credentials {
	t.Helper()
	cr, err := s.CreateDevice(context.Background(), auth.DeviceSpec{Name: name, Grants: grants})
	if err != nil {
		t.Fatalf("CreateDevice(%q, %+v): %v", name, grants, err)
	}
	return cr
}

func mustFindDevice(t *testing.T, s *testLocal, id uint64) *auth.Device {
	t.Helper()
	d, err := s.Devices.FindDevice(context.Background(), id)
	if err != nil {
		t.Fatalf("FindDevice(%d): %v", id, err)
	}
	return d
}

func mustFindChannel(t *testing.T, s *testLocal, id uint64) *channels.Channel {
	t.Helper()
	c, err := s.Channels.FindChannel(context.Background(), id)
	if err != nil {
		t.Fatalf("FindChannel(%d): %v", id, err)
	}
	return c
}

// login authenticates a device the way the broker does.
func login(s *testLocal, cr *auth.Credentials) (uint64, error) {
	return s.Registry.Authenticate(cr.Device.ClientID, cr.Device.Username, cr.Password)
}

func mustLogin(t *testing.T, s *testLocal, cr *auth.Credentials) {
	t.Helper()
	id, err := login(s, cr)
	if err != nil || id != cr.Device.ID {
		t.Fatalf("Authenticate(%s) = %d, %v; want %d, nil", cr.Device.Username, id, err, cr.Device.ID)
	}
}

func wantGrants(t *testing.T, d *auth.Device, want ...auth.Grant) {
	t.Helper()
	if len(d.Channels) != len(want) || (len(want) > 0 && !reflect.DeepEqual(d.Channels, want)) {
		t.Fatalf("device %d grants = %+v, want %+v", d.ID, d.Channels, want)
	}
}

func pubsub(ch uint64) auth.Grant { return auth.Grant{ChannelID: ch, Publish: true, Subscribe: true} }
func pub(ch uint64) auth.Grant    { return auth.Grant{ChannelID: ch, Publish: true} }
func sub(ch uint64) auth.Grant    { return auth.Grant{ChannelID: ch, Subscribe: true} }

func TestLocal_CreateChannel(t *testing.T) {
	ctx := context.Background()

	t.Run("defaults", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		for want := uint64(1); want <= 3; want++ {
			c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "Weather", Description: "roof"})
			if c.ID != want {
				t.Fatalf("channel ID = %d, want %d", c.ID, want)
			}
			if c.Name != "Weather" || c.Description != "roof" || c.Public {
				t.Fatalf("channel = %+v", c)
			}
			for n := 1; n <= channels.NumFields; n++ {
				if want := "Field " + string(rune('0'+n)); c.Fields[n-1] != want {
					t.Fatalf("field%d label = %q, want %q", n, c.Fields[n-1], want)
				}
			}
			if !channels.ValidKey(c.WriteKey) || !channels.ValidKey(c.ReadKey) || len(c.WriteKey) != 16 {
				t.Fatalf("keys %q, %q: want 16 characters from A-Z0-9", c.WriteKey, c.ReadKey)
			}
			if c.WriteKey == c.ReadKey {
				t.Fatalf("write key equals read key %q", c.WriteKey)
			}
			if c.CreatedAt.IsZero() {
				t.Fatal("CreatedAt not set")
			}
			if got := mustFindChannel(t, s, c.ID); !reflect.DeepEqual(got, c) {
				t.Fatalf("stored channel =\n%+v\nreturned\n%+v", got, c)
			}
			if got, ok := s.Registry.Channel(c.ID); !ok || got.WriteKey != c.WriteKey || got.ReadKey != c.ReadKey {
				t.Fatalf("registry channel = %+v, %v", got, ok)
			}
			wantErr(t, "CanPublish with the write key", s.Registry.CanPublish(auth.Anonymous, c.ID, c.WriteKey), nil)
			wantErr(t, "CanSubscribe with the read key", s.Registry.CanSubscribe(auth.Anonymous, c.ID, c.ReadKey), nil)
			wantErr(t, "CanSubscribe to a private channel", s.Registry.CanSubscribe(auth.Anonymous, c.ID, ""), auth.ErrNotAuthorized)
		}
		list, err := s.ListChannels(ctx)
		if err != nil || len(list) != 3 {
			t.Fatalf("ListChannels = %d channels, %v", len(list), err)
		}
		keys := map[string]bool{}
		for _, c := range list {
			keys[c.WriteKey], keys[c.ReadKey] = true, true
		}
		if len(keys) != 6 {
			t.Fatalf("3 channels share keys: %d distinct keys", len(keys))
		}
	})

	t.Run("custom fields", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		var f [channels.NumFields]string
		f[0], f[2], f[7] = "Temperature", "Humidity", "Battery"
		c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x", Fields: f})
		if c.Fields != f {
			t.Fatalf("fields = %q, want %q", c.Fields, f)
		}
		for n := 1; n <= channels.NumFields; n++ {
			if want := n == 1 || n == 3 || n == 8; c.FieldEnabled(n) != want {
				t.Fatalf("FieldEnabled(%d) = %v, want %v", n, c.FieldEnabled(n), want)
			}
		}
		if got := mustFindChannel(t, s, c.ID); got.Fields != f {
			t.Fatalf("stored fields = %q, want %q", got.Fields, f)
		}
	})

	t.Run("public", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x", Public: true})
		if !c.Public || !mustFindChannel(t, s, c.ID).Public {
			t.Fatal("channel created public is not public")
		}
		wantErr(t, "anonymous CanSubscribe to a public channel", s.Registry.CanSubscribe(auth.Anonymous, c.ID, ""), nil)
		wantErr(t, "anonymous CanPublish to a public channel", s.Registry.CanPublish(auth.Anonymous, c.ID, ""), auth.ErrNotAuthorized)
	})

	t.Run("invalid", func(t *testing.T) {
		long := strings.Repeat("x", channels.MaxNameLen+1)
		var longLabel, badLabel [channels.NumFields]string
		longLabel[0] = long
		badLabel[1] = "\xff"
		tests := []struct {
			name string
			spec auth.ChannelSpec
		}{
			{"empty name", auth.ChannelSpec{}},
			{"name too long", auth.ChannelSpec{Name: long}},
			{"name not UTF-8", auth.ChannelSpec{Name: "\xff\xfe"}},
			{"description too long", auth.ChannelSpec{Name: "x", Description: strings.Repeat("d", channels.MaxDescriptionLen+1)}},
			{"label too long", auth.ChannelSpec{Name: "x", Fields: longLabel}},
			{"label not UTF-8", auth.ChannelSpec{Name: "x", Fields: badLabel}},
		}
		s := newTestLocal(t, auth.DefaultLimits())
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := s.CreateChannel(ctx, tt.spec)
				wantCode(t, err, channels.EINVALID)
				if c != nil {
					t.Fatalf("CreateChannel returned %+v with an error", c)
				}
			})
		}
		if list, err := s.ListChannels(ctx); err != nil || len(list) != 0 {
			t.Fatalf("after invalid creates, ListChannels = %d channels, %v", len(list), err)
		}
		if _, ok := s.Registry.Channel(1); ok {
			t.Fatal("registry holds a channel that was refused")
		}
		// The refusals used no IDs.
		if c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "ok"}); c.ID != 1 {
			t.Fatalf("first valid channel has ID %d, want 1", c.ID)
		}
	})
}

func strp(s string) *string { return &s }
func boolp(b bool) *bool    { return &b }

func TestLocal_UpdateChannel(t *testing.T) {
	ctx := context.Background()

	t.Run("changes", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		orig := mustCreateChannel(t, s, auth.ChannelSpec{Name: "old", Description: "desc"})

		c, err := s.UpdateChannel(ctx, orig.ID, auth.ChannelUpdate{
			Name:   strp("new"),
			Fields: map[int]string{1: "Temperature", 2: "", 8: ""},
			Public: boolp(true),
		})
		if err != nil {
			t.Fatalf("UpdateChannel: %v", err)
		}
		want := channels.DefaultFields()
		want[0], want[1], want[7] = "Temperature", "", ""
		if c.Name != "new" || c.Description != "desc" || !c.Public || c.Fields != want {
			t.Fatalf("updated channel = %+v", c)
		}
		if c.WriteKey != orig.WriteKey || c.ReadKey != orig.ReadKey || c.ID != orig.ID {
			t.Fatalf("update changed ID or keys: %+v, was %+v", c, orig)
		}
		if got := mustFindChannel(t, s, orig.ID); !reflect.DeepEqual(got, c) {
			t.Fatalf("stored channel =\n%+v\nreturned\n%+v", got, c)
		}
		wantErr(t, "CanSubscribe after making the channel public", s.Registry.CanSubscribe(auth.Anonymous, c.ID, ""), nil)
		if rc, _ := s.Registry.Channel(c.ID); rc.Name != "new" || rc.Fields != want {
			t.Fatalf("registry channel = %+v", rc)
		}

		// Back to private, description cleared, a disabled field enabled
		// again; nil settings stay.
		c, err = s.UpdateChannel(ctx, orig.ID, auth.ChannelUpdate{
			Description: strp(""),
			Fields:      map[int]string{2: "Humidity"},
			Public:      boolp(false),
		})
		if err != nil {
			t.Fatalf("UpdateChannel: %v", err)
		}
		want[1] = "Humidity"
		if c.Name != "new" || c.Description != "" || c.Public || c.Fields != want {
			t.Fatalf("updated channel = %+v", c)
		}
		wantErr(t, "CanSubscribe after making the channel private", s.Registry.CanSubscribe(auth.Anonymous, c.ID, ""), auth.ErrNotAuthorized)

		// An empty update changes nothing but is not an error.
		again, err := s.UpdateChannel(ctx, orig.ID, auth.ChannelUpdate{})
		if err != nil {
			t.Fatalf("empty UpdateChannel: %v", err)
		}
		if again.Name != c.Name || again.Fields != c.Fields || again.Public != c.Public {
			t.Fatalf("empty update changed the channel: %+v, was %+v", again, c)
		}
	})

	t.Run("errors", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		orig := mustCreateChannel(t, s, auth.ChannelSpec{Name: "keep"})
		allOff := map[int]string{}
		for n := 1; n <= channels.NumFields; n++ {
			allOff[n] = ""
		}
		tests := []struct {
			name string
			id   uint64
			u    auth.ChannelUpdate
			code string
		}{
			{"field 0", orig.ID, auth.ChannelUpdate{Fields: map[int]string{0: "x"}}, channels.EINVALID},
			{"field 9", orig.ID, auth.ChannelUpdate{Fields: map[int]string{9: "x"}}, channels.EINVALID},
			{"negative field", orig.ID, auth.ChannelUpdate{Fields: map[int]string{-1: "x"}}, channels.EINVALID},
			{"valid and out-of-range field", orig.ID, auth.ChannelUpdate{Name: strp("changed"), Fields: map[int]string{1: "a", 9: "x"}}, channels.EINVALID},
			{"all fields disabled", orig.ID, auth.ChannelUpdate{Fields: allOff}, channels.EINVALID},
			{"empty name", orig.ID, auth.ChannelUpdate{Name: strp("")}, channels.EINVALID},
			{"name too long", orig.ID, auth.ChannelUpdate{Name: strp(strings.Repeat("n", channels.MaxNameLen+1))}, channels.EINVALID},
			{"label too long", orig.ID, auth.ChannelUpdate{Fields: map[int]string{3: strings.Repeat("l", channels.MaxLabelLen+1)}}, channels.EINVALID},
			{"unknown channel", 99, auth.ChannelUpdate{Name: strp("x")}, channels.ENOTFOUND},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c, err := s.UpdateChannel(ctx, tt.id, tt.u)
				wantCode(t, err, tt.code)
				if c != nil {
					t.Fatalf("UpdateChannel returned %+v with an error", c)
				}
				// Nothing changed, in the store or in the registry.
				if got := mustFindChannel(t, s, orig.ID); !reflect.DeepEqual(got, orig) {
					t.Fatalf("after a refused update, stored channel =\n%+v\nwant\n%+v", got, orig)
				}
				if rc, _ := s.Registry.Channel(orig.ID); !reflect.DeepEqual(rc, orig) {
					t.Fatalf("after a refused update, registry channel =\n%+v\nwant\n%+v", rc, orig)
				}
			})
		}
	})
}

func TestLocal_RegenerateKey(t *testing.T) {
	ctx := context.Background()
	for _, write := range []bool{true, false} {
		name := "read"
		if write {
			name = "write"
		}
		t.Run(name, func(t *testing.T) {
			s := newTestLocal(t, auth.DefaultLimits())
			orig := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
			other := mustCreateChannel(t, s, auth.ChannelSpec{Name: "y"})

			c, err := s.RegenerateKey(ctx, orig.ID, write)
			if err != nil {
				t.Fatalf("RegenerateKey: %v", err)
			}
			if !channels.ValidKey(c.WriteKey) || !channels.ValidKey(c.ReadKey) {
				t.Fatalf("keys after regenerate: %q, %q", c.WriteKey, c.ReadKey)
			}
			changed, kept := c.WriteKey != orig.WriteKey, c.ReadKey == orig.ReadKey
			if !write {
				changed, kept = c.ReadKey != orig.ReadKey, c.WriteKey == orig.WriteKey
			}
			if !changed || !kept {
				t.Fatalf("RegenerateKey(write=%v): keys %q/%q, were %q/%q", write, c.WriteKey, c.ReadKey, orig.WriteKey, orig.ReadKey)
			}
			if c.Name != orig.Name || c.Fields != orig.Fields || c.Public != orig.Public {
				t.Fatalf("RegenerateKey changed settings: %+v, was %+v", c, orig)
			}
			if got := mustFindChannel(t, s, orig.ID); got.WriteKey != c.WriteKey || got.ReadKey != c.ReadKey {
				t.Fatalf("stored keys %q/%q, returned %q/%q", got.WriteKey, got.ReadKey, c.WriteKey, c.ReadKey)
			}
			if got := mustFindChannel(t, s, other.ID); got.WriteKey != other.WriteKey || got.ReadKey != other.ReadKey {
				t.Fatal("RegenerateKey changed another channel's keys")
			}

			r := s.Registry
			if write {
				wantErr(t, "CanPublish with the old write key", r.CanPublish(auth.Anonymous, c.ID, orig.WriteKey), auth.ErrNotAuthorized)
				wantErr(t, "CanPublish with the new write key", r.CanPublish(auth.Anonymous, c.ID, c.WriteKey), nil)
				wantErr(t, "CanSubscribe with the unchanged read key", r.CanSubscribe(auth.Anonymous, c.ID, orig.ReadKey), nil)
			} else {
				wantErr(t, "CanSubscribe with the old read key", r.CanSubscribe(auth.Anonymous, c.ID, orig.ReadKey), auth.ErrNotAuthorized)
				wantErr(t, "CanSubscribe with the new read key", r.CanSubscribe(auth.Anonymous, c.ID, c.ReadKey), nil)
				wantErr(t, "CanPublish with the unchanged write key", r.CanPublish(auth.Anonymous, c.ID, orig.WriteKey), nil)
			}
			wantErr(t, "CanPublish to the other channel with its key", r.CanPublish(auth.Anonymous, other.ID, other.WriteKey), nil)
		})
	}

	t.Run("unknown channel", func(t *testing.T) {
		s := newTestLocal(t, auth.DefaultLimits())
		_, err := s.RegenerateKey(ctx, 7, true)
		wantCode(t, err, channels.ENOTFOUND)
	})
}

func TestLocal_DeleteChannel(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})
	a := mustCreateDevice(t, s, "a", pubsub(c1.ID), pub(c2.ID))
	b := mustCreateDevice(t, s, "b", sub(c1.ID))
	other := mustCreateDevice(t, s, "other", pub(c2.ID))

	if err := s.DeleteChannel(ctx, c1.ID); err != nil {
		t.Fatalf("DeleteChannel: %v", err)
	}
	_, err := s.Channel(ctx, c1.ID)
	wantCode(t, err, channels.ENOTFOUND)
	wantGrants(t, mustFindDevice(t, s, a.Device.ID), pub(c2.ID))
	wantGrants(t, mustFindDevice(t, s, b.Device.ID))
	wantGrants(t, mustFindDevice(t, s, other.Device.ID), pub(c2.ID))

	r := s.Registry
	wantErr(t, "CanPublish to the deleted channel", r.CanPublish(a.Device.ID, c1.ID, ""), auth.ErrUnknownChannel)
	wantErr(t, "CanPublish with the deleted channel's key", r.CanPublish(auth.Anonymous, c1.ID, c1.WriteKey), auth.ErrUnknownChannel)
	wantErr(t, "CanSubscribe to the deleted channel", r.CanSubscribe(b.Device.ID, c1.ID, ""), auth.ErrUnknownChannel)
	wantErr(t, "CanPublish on a remaining grant", r.CanPublish(a.Device.ID, c2.ID, ""), nil)
	mustLogin(t, s, a)
	mustLogin(t, s, b)

	// IDs are not reused, so a new channel never inherits old grants.
	c3 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "three"})
	if c3.ID == c1.ID {
		t.Fatalf("new channel reuses deleted ID %d", c1.ID)
	}
	wantErr(t, "CanPublish to a new channel", r.CanPublish(a.Device.ID, c3.ID, ""), auth.ErrNotAuthorized)

	// The device is still usable: grants on it can be changed.
	if _, err := s.AuthorizeDevice(ctx, b.Device.ID, []auth.Grant{pub(c2.ID)}); err != nil {
		t.Fatalf("AuthorizeDevice after DeleteChannel: %v", err)
	}

	wantCode(t, s.DeleteChannel(ctx, c1.ID), channels.ENOTFOUND)
	wantCode(t, s.DeleteChannel(ctx, 99), channels.ENOTFOUND)
	s.revokes.want(t)
}

func TestLocal_CreateDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})

	cr := mustCreateDevice(t, s, "  sensor  ", pubsub(c1.ID), sub(c2.ID))
	d := cr.Device
	if d.ID != 1 || d.Name != "sensor" {
		t.Fatalf("device = %+v; want ID 1 and the name trimmed", d)
	}
	if len(d.ClientID) != 23 || d.Username != d.ClientID {
		t.Fatalf("client ID %q, username %q: want equal, 23 characters", d.ClientID, d.Username)
	}
	if len(cr.Password) != 24 {
		t.Fatalf("password %q: want 24 characters", cr.Password)
	}
	wantGrants(t, d, pubsub(c1.ID), sub(c2.ID))

	// Usable at once.
	mustLogin(t, s, cr)
	r := s.Registry
	wantErr(t, "CanPublish on a pubsub grant", r.CanPublish(d.ID, c1.ID, ""), nil)
	wantErr(t, "CanSubscribe on a pubsub grant", r.CanSubscribe(d.ID, c1.ID, ""), nil)
	wantErr(t, "CanPublish on a sub grant", r.CanPublish(d.ID, c2.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanSubscribe on a sub grant", r.CanSubscribe(d.ID, c2.ID, ""), nil)
	if !r.CheckPassword(d.ID, cr.Password) {
		t.Fatal("CheckPassword with the new password = false")
	}

	// Only the hash is stored.
	stored := mustFindDevice(t, s, d.ID)
	if stored.PasswordHash != auth.HashPassword(cr.Password) || !auth.VerifyPassword(stored.PasswordHash, cr.Password) {
		t.Fatalf("stored hash %q does not verify the password", stored.PasswordHash)
	}
	if stored.ClientID != d.ClientID || stored.Username != d.Username || stored.Name != "sensor" {
		t.Fatalf("stored device = %+v, created %+v", stored, d)
	}
	wantGrants(t, stored, pubsub(c1.ID), sub(c2.ID))
	for _, v := range []string{stored.Name, stored.ClientID, stored.Username, stored.PasswordHash} {
		if strings.Contains(v, cr.Password) {
			t.Fatalf("stored device %+v holds the password", stored)
		}
	}
	raw, err := os.ReadFile(s.db.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(cr.Password)) {
		t.Fatal("the database file contains the password in clear")
	}
	if !bytes.Contains(raw, []byte(stored.PasswordHash)) {
		t.Fatal("the database file does not contain the password hash (is the file read correctly?)")
	}

	// A second device gets the next ID and its own credentials.
	cr2 := mustCreateDevice(t, s, "other")
	if cr2.Device.ID != 2 || cr2.Device.ClientID == d.ClientID || cr2.Password == cr.Password {
		t.Fatalf("second device = %+v, password %q", cr2.Device, cr2.Password)
	}
	wantGrants(t, cr2.Device)
	mustLogin(t, s, cr2)
	wantErr(t, "CanPublish without grants", r.CanPublish(cr2.Device.ID, c1.ID, ""), auth.ErrNotAuthorized)
	// One device's password does not open another.
	if _, err := r.Authenticate(cr2.Device.ClientID, cr2.Device.Username, cr.Password); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("Authenticate with another device's password = %v", err)
	}
	// Nor its client ID with the right password.
	if _, err := r.Authenticate(d.ClientID, cr2.Device.Username, cr2.Password); !errors.Is(err, auth.ErrClientID) {
		t.Fatalf("Authenticate with another device's client ID = %v", err)
	}

	list, err := s.ListDevices(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListDevices = %d devices, %v", len(list), err)
	}
	s.revokes.want(t)
}

func TestLocal_CreateDeviceMergesGrants(t *testing.T) {
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
	// Two grants for one channel become one: the later replaces the
	// earlier, as in AuthorizeDevice.
	cr := mustCreateDevice(t, s, "d", pub(c.ID), sub(c.ID))
	wantGrants(t, cr.Device, sub(c.ID))
	wantGrants(t, mustFindDevice(t, s, cr.Device.ID), sub(c.ID))
}

func TestLocal_CreateDeviceErrors(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
	tests := []struct {
		name   string
		dev    string
		grants []auth.Grant
		code   string
	}{
		{"empty name", "", nil, channels.EINVALID},
		{"blank name", " \t\n", nil, channels.EINVALID},
		{"name too long", strings.Repeat("n", channels.MaxNameLen+1), nil, channels.EINVALID},
		{"name not UTF-8", "\xff", nil, channels.EINVALID},
		{"missing channel", "d", []auth.Grant{pubsub(99)}, channels.ENOTFOUND},
		{"missing channel after a good one", "d", []auth.Grant{pubsub(c.ID), pub(99)}, channels.ENOTFOUND},
		{"channel zero", "d", []auth.Grant{pubsub(0)}, channels.ENOTFOUND},
		{"grant without rights", "d", []auth.Grant{{ChannelID: c.ID}}, channels.EINVALID},
		{"grant without rights on a missing channel", "d", []auth.Grant{{ChannelID: 99}}, channels.EINVALID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cr, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: tt.dev, Grants: tt.grants})
			wantCode(t, err, tt.code)
			if cr != nil {
				t.Fatalf("CreateDevice returned %+v with an error", cr)
			}
		})
	}
	if list, err := s.ListDevices(ctx); err != nil || len(list) != 0 {
		t.Fatalf("after refused creates, ListDevices = %d devices, %v", len(list), err)
	}
	if cr := mustCreateDevice(t, s, "ok"); cr.Device.ID != 1 {
		t.Fatalf("first valid device has ID %d, want 1", cr.Device.ID)
	}
}

func TestLocal_MaxDevices(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.Limits{MaxDevices: 3, MaxChannelsPerDevice: 10})
	var created []*auth.Credentials
	for range 3 {
		created = append(created, mustCreateDevice(t, s, "d"))
	}
	cr, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "one too many"})
	wantCode(t, err, channels.ELIMIT)
	if cr != nil {
		t.Fatalf("CreateDevice over the limit returned %+v", cr)
	}
	if msg := channels.ErrorMessage(err); !strings.Contains(msg, "limits.max_devices") || !strings.Contains(msg, "3") {
		t.Fatalf("limit error %q should name limits.max_devices and the limit", msg)
	}
	if list, _ := s.ListDevices(ctx); len(list) != 3 {
		t.Fatalf("%d devices stored, want 3", len(list))
	}

	// Deleting one makes room again.
	if err := s.DeleteDevice(ctx, created[1].Device.ID); err != nil {
		t.Fatal(err)
	}
	mustCreateDevice(t, s, "replacement")
	_, err = s.CreateDevice(ctx, auth.DeviceSpec{Name: "one too many"})
	wantCode(t, err, channels.ELIMIT)
}

func TestLocal_MaxDevicesConcurrent(t *testing.T) {
	ctx := context.Background()
	const limit = 3
	s := newTestLocal(t, auth.Limits{MaxDevices: limit})
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Go(func() {
			_, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "d"})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	ok := 0
	for err := range errs {
		switch channels.ErrorCode(err) {
		case "":
			ok++
		case channels.ELIMIT:
		default:
			t.Fatalf("concurrent CreateDevice: %v", err)
		}
	}
	if list, _ := s.ListDevices(ctx); ok != limit || len(list) != limit {
		t.Fatalf("%d creates succeeded, %d devices stored; want %d", ok, len(list), limit)
	}
}

func TestLocal_MaxChannelsPerDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.Limits{MaxDevices: 10, MaxChannelsPerDevice: 2})
	var ch []uint64
	for range 3 {
		ch = append(ch, mustCreateChannel(t, s, auth.ChannelSpec{Name: "c"}).ID)
	}
	wantLimit := func(t *testing.T, err error) {
		t.Helper()
		wantCode(t, err, channels.ELIMIT)
		if msg := channels.ErrorMessage(err); !strings.Contains(msg, "limits.max_channels_per_device") || !strings.Contains(msg, "2") {
			t.Fatalf("limit error %q should name limits.max_channels_per_device and the limit", msg)
		}
	}

	t.Run("create", func(t *testing.T) {
		_, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "greedy", Grants: []auth.Grant{pub(ch[0]), pub(ch[1]), pub(ch[2])}})
		wantLimit(t, err)
		if list, _ := s.ListDevices(ctx); len(list) != 0 {
			t.Fatalf("a device over the channel limit was stored: %+v", list)
		}
		// Duplicates count once.
		cr := mustCreateDevice(t, s, "dups", pub(ch[0]), sub(ch[0]), pubsub(ch[1]), pub(ch[1]))
		wantGrants(t, cr.Device, sub(ch[0]), pub(ch[1]))
	})

	t.Run("authorize", func(t *testing.T) {
		cr := mustCreateDevice(t, s, "d", pub(ch[0]), pub(ch[1]))
		id := cr.Device.ID
		d, err := s.AuthorizeDevice(ctx, id, []auth.Grant{sub(ch[2])})
		wantLimit(t, err)
		if d != nil {
			t.Fatalf("AuthorizeDevice over the limit returned %+v", d)
		}
		wantGrants(t, mustFindDevice(t, s, id), pub(ch[0]), pub(ch[1]))
		wantErr(t, "CanSubscribe after a refused authorize", s.Registry.CanSubscribe(id, ch[2], ""), auth.ErrNotAuthorized)
		wantErr(t, "CanPublish after a refused authorize", s.Registry.CanPublish(id, ch[0], ""), nil)

		// At the limit, changing an existing grant is still fine.
		d, err = s.AuthorizeDevice(ctx, id, []auth.Grant{pubsub(ch[1])})
		if err != nil {
			t.Fatalf("AuthorizeDevice replacing a grant at the limit: %v", err)
		}
		wantGrants(t, d, pub(ch[0]), pubsub(ch[1]))

		// After a deauthorize there is room again.
		if _, err := s.DeauthorizeDevice(ctx, id, ch[0]); err != nil {
			t.Fatal(err)
		}
		if d, err = s.AuthorizeDevice(ctx, id, []auth.Grant{sub(ch[2])}); err != nil {
			t.Fatalf("AuthorizeDevice after making room: %v", err)
		}
		wantGrants(t, d, pubsub(ch[1]), sub(ch[2]))
	})
}

func TestLocal_AuthorizeDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})
	cr := mustCreateDevice(t, s, "d", pub(c1.ID))
	id := cr.Device.ID
	r := s.Registry

	t.Run("replace", func(t *testing.T) {
		d, err := s.AuthorizeDevice(ctx, id, []auth.Grant{sub(c1.ID)})
		if err != nil {
			t.Fatalf("AuthorizeDevice: %v", err)
		}
		wantGrants(t, d, sub(c1.ID))
		wantGrants(t, mustFindDevice(t, s, id), sub(c1.ID))
		wantErr(t, "CanPublish after the grant was replaced", r.CanPublish(id, c1.ID, ""), auth.ErrNotAuthorized)
		wantErr(t, "CanSubscribe after the grant was replaced", r.CanSubscribe(id, c1.ID, ""), nil)
	})

	t.Run("add", func(t *testing.T) {
		d, err := s.AuthorizeDevice(ctx, id, []auth.Grant{pubsub(c2.ID)})
		if err != nil {
			t.Fatalf("AuthorizeDevice: %v", err)
		}
		wantGrants(t, d, sub(c1.ID), pubsub(c2.ID))
		wantGrants(t, mustFindDevice(t, s, id), sub(c1.ID), pubsub(c2.ID))
		wantErr(t, "CanPublish on the added grant", r.CanPublish(id, c2.ID, ""), nil)
	})

	t.Run("several at once", func(t *testing.T) {
		d, err := s.AuthorizeDevice(ctx, id, []auth.Grant{pubsub(c1.ID), pub(c2.ID)})
		if err != nil {
			t.Fatalf("AuthorizeDevice: %v", err)
		}
		wantGrants(t, d, pubsub(c1.ID), pub(c2.ID))
	})

	t.Run("credentials unchanged", func(t *testing.T) {
		mustLogin(t, s, cr)
		stored := mustFindDevice(t, s, id)
		if stored.ClientID != cr.Device.ClientID || stored.PasswordHash != cr.Device.PasswordHash {
			t.Fatalf("AuthorizeDevice changed credentials: %+v", stored)
		}
		s.revokes.want(t)
	})

	t.Run("errors", func(t *testing.T) {
		before := mustFindDevice(t, s, id)
		tests := []struct {
			name   string
			id     uint64
			grants []auth.Grant
			code   string
		}{
			{"unknown device", 99, []auth.Grant{pub(c1.ID)}, channels.ENOTFOUND},
			{"missing channel", id, []auth.Grant{pub(99)}, channels.ENOTFOUND},
			{"missing channel after a good one", id, []auth.Grant{sub(c1.ID), pub(99)}, channels.ENOTFOUND},
			{"grant without rights", id, []auth.Grant{{ChannelID: c1.ID}}, channels.EINVALID},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				d, err := s.AuthorizeDevice(ctx, tt.id, tt.grants)
				wantCode(t, err, tt.code)
				if d != nil {
					t.Fatalf("AuthorizeDevice returned %+v with an error", d)
				}
				if got := mustFindDevice(t, s, id); !reflect.DeepEqual(got, before) {
					t.Fatalf("a refused AuthorizeDevice changed the device:\n%+v\nwas\n%+v", got, before)
				}
				wantErr(t, "CanPublish after a refused authorize", r.CanPublish(id, c1.ID, ""), nil)
			})
		}
	})
}

func TestLocal_DeauthorizeDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})
	c3 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "three"})
	cr := mustCreateDevice(t, s, "d", pubsub(c1.ID), pub(c2.ID))
	id := cr.Device.ID

	d, err := s.DeauthorizeDevice(ctx, id, c1.ID)
	if err != nil {
		t.Fatalf("DeauthorizeDevice: %v", err)
	}
	wantGrants(t, d, pub(c2.ID))
	wantGrants(t, mustFindDevice(t, s, id), pub(c2.ID))
	r := s.Registry
	wantErr(t, "CanPublish after deauthorize", r.CanPublish(id, c1.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanSubscribe after deauthorize", r.CanSubscribe(id, c1.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanPublish on the other grant", r.CanPublish(id, c2.ID, ""), nil)
	mustLogin(t, s, cr)

	tests := []struct {
		name   string
		id, ch uint64
		code   string
	}{
		{"already removed", id, c1.ID, channels.ENOTFOUND},
		{"never granted", id, c3.ID, channels.ENOTFOUND},
		{"missing channel", id, 99, channels.ENOTFOUND},
		{"unknown device", 99, c2.ID, channels.ENOTFOUND},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.DeauthorizeDevice(ctx, tt.id, tt.ch)
			wantCode(t, err, tt.code)
			if d != nil {
				t.Fatalf("DeauthorizeDevice returned %+v with an error", d)
			}
			wantGrants(t, mustFindDevice(t, s, id), pub(c2.ID))
		})
	}

	// The last grant can go too.
	if d, err = s.DeauthorizeDevice(ctx, id, c2.ID); err != nil {
		t.Fatal(err)
	}
	wantGrants(t, d)
	wantGrants(t, mustFindDevice(t, s, id))
	wantErr(t, "CanPublish without grants", r.CanPublish(id, c2.ID, ""), auth.ErrNotAuthorized)
	s.revokes.want(t)
}

func TestLocal_ResetPassword(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
	old := mustCreateDevice(t, s, "d", pubsub(c.ID))
	bystander := mustCreateDevice(t, s, "other")
	id := old.Device.ID

	cr, err := s.ResetPassword(ctx, id)
	if err != nil {
		t.Fatalf("ResetPassword: %v", err)
	}
	if len(cr.Password) != 24 || cr.Password == old.Password {
		t.Fatalf("new password %q (old %q)", cr.Password, old.Password)
	}
	d := cr.Device
	if d.ID != id || d.ClientID != old.Device.ClientID || d.Username != old.Device.Username || d.Name != "d" {
		t.Fatalf("device after reset = %+v, was %+v", d, old.Device)
	}
	wantGrants(t, d, pubsub(c.ID))
	s.revokes.want(t, id)

	r := s.Registry
	if _, err := login(s, old); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("Authenticate with the old password = %v, want ErrBadCredentials", err)
	}
	if r.CheckPassword(id, old.Password) {
		t.Fatal("CheckPassword with the old password = true")
	}
	mustLogin(t, s, cr)
	if !r.CheckPassword(id, cr.Password) {
		t.Fatal("CheckPassword with the new password = false")
	}
	wantErr(t, "CanPublish after reset", r.CanPublish(id, c.ID, ""), nil)
	mustLogin(t, s, bystander)

	stored := mustFindDevice(t, s, id)
	if !auth.VerifyPassword(stored.PasswordHash, cr.Password) || auth.VerifyPassword(stored.PasswordHash, old.Password) {
		t.Fatalf("stored hash %q does not match the new password only", stored.PasswordHash)
	}
	wantGrants(t, stored, pubsub(c.ID))

	// Errors call no Revoke.
	_, err = s.ResetPassword(ctx, 99)
	wantCode(t, err, channels.ENOTFOUND)
	s.revokes.want(t, id)

	// Without a Revoke callback, a reset still works.
	s.Revoke = nil
	if cr, err = s.ResetPassword(ctx, id); err != nil {
		t.Fatalf("ResetPassword without Revoke: %v", err)
	}
	mustLogin(t, s, cr)
}

func TestLocal_DeleteDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
	cr := mustCreateDevice(t, s, "d", pubsub(c.ID))
	keep := mustCreateDevice(t, s, "keep", pub(c.ID))
	id := cr.Device.ID

	if err := s.DeleteDevice(ctx, id); err != nil {
		t.Fatalf("DeleteDevice: %v", err)
	}
	s.revokes.want(t, id)
	if _, err := login(s, cr); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("Authenticate of a deleted device = %v, want ErrBadCredentials", err)
	}
	r := s.Registry
	if r.CheckPassword(id, cr.Password) {
		t.Fatal("CheckPassword of a deleted device = true")
	}
	wantErr(t, "CanPublish by a deleted device", r.CanPublish(id, c.ID, ""), auth.ErrNotAuthorized)
	_, err := s.Device(ctx, id)
	wantCode(t, err, channels.ENOTFOUND)
	mustLogin(t, s, keep)
	wantErr(t, "CanPublish by another device", r.CanPublish(keep.Device.ID, c.ID, ""), nil)

	wantCode(t, s.DeleteDevice(ctx, id), channels.ENOTFOUND)
	wantCode(t, s.DeleteDevice(ctx, 99), channels.ENOTFOUND)
	s.revokes.want(t, id)

	// IDs are not reused.
	if n := mustCreateDevice(t, s, "new"); n.Device.ID == id {
		t.Fatalf("new device reuses deleted ID %d", id)
	}

	s.Revoke = nil
	if err := s.DeleteDevice(ctx, keep.Device.ID); err != nil {
		t.Fatalf("DeleteDevice without Revoke: %v", err)
	}
}

func TestLocal_ChannelAndDeviceReads(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{Name: "x"})
	cr := mustCreateDevice(t, s, "d", pub(c.ID))

	got, err := s.Channel(ctx, c.ID)
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("Channel = %+v, %v; want %+v", got, err, c)
	}
	d, err := s.Device(ctx, cr.Device.ID)
	if err != nil || !reflect.DeepEqual(d, cr.Device) {
		t.Fatalf("Device = %+v, %v; want %+v", d, err, cr.Device)
	}
	_, err = s.Channel(ctx, 99)
	wantCode(t, err, channels.ENOTFOUND)
	_, err = s.Device(ctx, 99)
	wantCode(t, err, channels.ENOTFOUND)
	_, err = s.Entries(ctx, 99, channels.EntryFilter{})
	wantCode(t, err, channels.ENOTFOUND)
	wantCode(t, s.ClearChannel(ctx, 99), channels.ENOTFOUND)
	if err := s.ClearChannel(ctx, c.ID); err != nil {
		t.Fatalf("ClearChannel: %v", err)
	}
	if es, err := s.Entries(ctx, c.ID, channels.EntryFilter{}); err != nil || len(es) != 0 {
		t.Fatalf("Entries of a new channel = %v, %v", es, err)
	}
}

// TestNewLocal_Reopen checks that a Local on a reopened database loads
// every channel and device into its registry, so the broker authenticates
// from memory right after a restart.
func TestNewLocal_Reopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	s1, err := admin.NewLocal(ctx, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	ts := &testLocal{Local: s1, db: db, revokes: &revokes{}}
	priv := mustCreateChannel(t, ts, auth.ChannelSpec{Name: "private"})
	public := mustCreateChannel(t, ts, auth.ChannelSpec{Name: "public", Public: true})
	gone := mustCreateChannel(t, ts, auth.ChannelSpec{Name: "gone"})
	a := mustCreateDevice(t, ts, "a", pubsub(priv.ID), pub(gone.ID))
	b := mustCreateDevice(t, ts, "b", sub(priv.ID))
	deleted := mustCreateDevice(t, ts, "deleted", pub(priv.ID))
	if b, err = s1.ResetPassword(ctx, b.Device.ID); err != nil {
		t.Fatal(err)
	}
	if priv, err = s1.RegenerateKey(ctx, priv.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s1.DeleteDevice(ctx, deleted.Device.ID); err != nil {
		t.Fatal(err)
	}
	if err := s1.DeleteChannel(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openDB(t, path)
	s2, err := admin.NewLocal(ctx, db2, auth.DefaultLimits())
	if err != nil {
		t.Fatalf("NewLocal on the reopened database: %v", err)
	}
	ts2 := &testLocal{Local: s2, db: db2, revokes: &revokes{}}
	r := s2.Registry

	mustLogin(t, ts2, a)
	mustLogin(t, ts2, b)
	if _, err := login(ts2, deleted); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("Authenticate of a device deleted before the restart = %v", err)
	}
	if !r.CheckPassword(b.Device.ID, b.Password) {
		t.Fatal("CheckPassword with the reset password = false after reopen")
	}

	wantErr(t, "grant publish", r.CanPublish(a.Device.ID, priv.ID, ""), nil)
	wantErr(t, "grant subscribe", r.CanSubscribe(a.Device.ID, priv.ID, ""), nil)
	wantErr(t, "sub-only grant publish", r.CanPublish(b.Device.ID, priv.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "sub-only grant subscribe", r.CanSubscribe(b.Device.ID, priv.ID, ""), nil)
	wantErr(t, "regenerated write key", r.CanPublish(auth.Anonymous, priv.ID, priv.WriteKey), nil)
	wantErr(t, "read key", r.CanSubscribe(auth.Anonymous, priv.ID, priv.ReadKey), nil)
	wantErr(t, "public channel", r.CanSubscribe(auth.Anonymous, public.ID, ""), nil)
	wantErr(t, "private channel", r.CanSubscribe(auth.Anonymous, priv.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "deleted channel", r.CanPublish(a.Device.ID, gone.ID, ""), auth.ErrUnknownChannel)

	if rc, ok := r.Channel(priv.ID); !ok || rc.Name != "private" || rc.Fields != priv.Fields {
		t.Fatalf("registry channel after reopen = %+v, %v", rc, ok)
	}

	// The reopened service keeps numbering and limits where they were.
	if c := mustCreateChannel(t, ts2, auth.ChannelSpec{Name: "next"}); c.ID != 4 {
		t.Fatalf("channel created after reopen has ID %d, want 4", c.ID)
	}
	if d := mustCreateDevice(t, ts2, "next"); d.Device.ID != 4 {
		t.Fatalf("device created after reopen has ID %d, want 4", d.Device.ID)
	}
}

func TestNewLocal_LoadsLimitsFromStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db")
	db := openDB(t, path)
	s1, err := admin.NewLocal(ctx, db, auth.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testLocal{Local: s1, db: db, revokes: &revokes{}}
	for range 3 {
		mustCreateDevice(t, ts, "d")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Devices created before the restart count against a limit set after.
	db2 := openDB(t, path)
	s2, err := admin.NewLocal(ctx, db2, auth.Limits{MaxDevices: 3})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s2.CreateDevice(ctx, auth.DeviceSpec{Name: "over"})
	wantCode(t, err, channels.ELIMIT)
}

// failingChannels and failingDevices fail their lists, to check that
// NewLocal reports a store it cannot load instead of starting with an
// empty registry.
type failingChannels struct {
	channels.Store
	fail bool
}

type failingDevices struct{ auth.Store }

var errBroken = errors.New("broken store")

func (f failingChannels) ListChannels(context.Context) ([]*channels.Channel, error) {
	if f.fail {
		return nil, errBroken
	}
	return nil, nil
}

func (failingDevices) ListDevices(context.Context) ([]*auth.Device, error) { return nil, errBroken }

func TestNewLocal_StoreErrors(t *testing.T) {
	for _, failChannels := range []bool{true, false} {
		s, err := admin.NewLocalOver(context.Background(), failingChannels{fail: failChannels}, failingDevices{}, nil, auth.DefaultLimits())
		if !errors.Is(err, errBroken) || s != nil {
			t.Fatalf("NewLocal over a failing store (channels fail: %v) = %v, %v", failChannels, s, err)
		}
	}
}

// brokenWrites wraps a database and, once broken is set, fails every
// write, as a full disk would.
type brokenWrites struct {
	*storage.DB
	broken bool
}

func (b *brokenWrites) fail() error {
	if b.broken {
		return errBroken
	}
	return nil
}

func (b *brokenWrites) CreateChannel(ctx context.Context, c *channels.Channel) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.CreateChannel(ctx, c)
}

func (b *brokenWrites) UpdateChannel(ctx context.Context, c *channels.Channel) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.UpdateChannel(ctx, c)
}

func (b *brokenWrites) DeleteChannel(ctx context.Context, id uint64) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.DeleteChannel(ctx, id)
}

func (b *brokenWrites) CreateDevice(ctx context.Context, d *auth.Device) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.CreateDevice(ctx, d)
}

func (b *brokenWrites) UpdateDevice(ctx context.Context, d *auth.Device) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.UpdateDevice(ctx, d)
}

func (b *brokenWrites) DeleteDevice(ctx context.Context, id uint64) error {
	if err := b.fail(); err != nil {
		return err
	}
	return b.DB.DeleteDevice(ctx, id)
}

// TestService_FailedWritesChangeNothing checks that the registry follows
// only committed changes: when the store refuses a write, the broker must
// go on seeing the old state and no connection is revoked.
func TestLocal_FailedWritesChangeNothing(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, filepath.Join(t.TempDir(), "db"))
	store := &brokenWrites{DB: db}
	svc, err := admin.NewLocalOver(ctx, store, store, db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	rv := &revokes{}
	svc.Revoke = rv.revoke
	s := &testLocal{Local: svc, db: db, revokes: rv}
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})
	cr := mustCreateDevice(t, s, "d", pub(c1.ID))
	id := cr.Device.ID
	store.broken = true

	steps := []struct {
		name string
		do   func() error
	}{
		{"CreateChannel", func() error { _, err := s.CreateChannel(ctx, auth.ChannelSpec{Name: "x"}); return err }},
		{"UpdateChannel", func() error {
			_, err := s.UpdateChannel(ctx, c1.ID, auth.ChannelUpdate{Public: boolp(true)})
			return err
		}},
		{"RegenerateKey", func() error { _, err := s.RegenerateKey(ctx, c1.ID, true); return err }},
		{"DeleteChannel", func() error { return s.DeleteChannel(ctx, c1.ID) }},
		{"CreateDevice", func() error {
			_, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "x", Grants: []auth.Grant{pub(c1.ID)}})
			return err
		}},
		{"AuthorizeDevice", func() error { _, err := s.AuthorizeDevice(ctx, id, []auth.Grant{sub(c2.ID)}); return err }},
		{"DeauthorizeDevice", func() error { _, err := s.DeauthorizeDevice(ctx, id, c1.ID); return err }},
		{"ResetPassword", func() error { _, err := s.ResetPassword(ctx, id); return err }},
		{"DeleteDevice", func() error { return s.DeleteDevice(ctx, id) }},
	}
	r := s.Registry
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); !errors.Is(err, errBroken) {
				t.Fatalf("%s on a broken store = %v, want the store's error", st.name, err)
			}
			mustLogin(t, s, cr)
			wantErr(t, "CanPublish on the grant", r.CanPublish(id, c1.ID, ""), nil)
			wantErr(t, "CanSubscribe without a grant", r.CanSubscribe(id, c2.ID, ""), auth.ErrNotAuthorized)
			wantErr(t, "CanPublish with the write key", r.CanPublish(auth.Anonymous, c1.ID, c1.WriteKey), nil)
			wantErr(t, "CanSubscribe to a private channel", r.CanSubscribe(auth.Anonymous, c1.ID, ""), auth.ErrNotAuthorized)
			if _, ok := r.Channel(3); ok {
				t.Fatal("registry holds a channel the store refused")
			}
			s.revokes.want(t)
		})
	}

	// A store that cannot even list devices refuses creates too.
	ctxDone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.CreateDevice(ctxDone, auth.DeviceSpec{Name: "x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateDevice with a cancelled context = %v", err)
	}
}

func TestLocal_ChannelSettings(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	c := mustCreateChannel(t, s, auth.ChannelSpec{
		Latitude: " 52.5163 ", Longitude: "13.3777", Elevation: "34",
		Metadata: " kept as typed ", Tags: []string{" roof", "", "weather station", "roof"},
		URL: " https://example.com/station ",
	})
	if c.Latitude != "52.5163" || c.Longitude != "13.3777" || c.Elevation != "34" || c.Metadata != " kept as typed " ||
		!reflect.DeepEqual(c.Tags, []string{"roof", "weather station"}) || c.URL != "https://example.com/station" {
		t.Fatalf("created channel = %+v", c)
	}
	if got := mustFindChannel(t, s, c.ID); !reflect.DeepEqual(got, c) {
		t.Fatalf("stored\n%+v\nreturned\n%+v", got, c)
	}

	// Nil settings stay; given ones change; "" and an empty list unset.
	tags := []string{"b", "a"}
	u, err := s.UpdateChannel(ctx, c.ID, auth.ChannelUpdate{Latitude: strp("-1.5"), Tags: &tags})
	if err != nil {
		t.Fatal(err)
	}
	if u.Latitude != "-1.5" || u.Longitude != "13.3777" || !reflect.DeepEqual(u.Tags, tags) || u.URL != c.URL {
		t.Fatalf("updated channel = %+v", u)
	}
	empty := []string{}
	u, err = s.UpdateChannel(ctx, c.ID, auth.ChannelUpdate{Latitude: strp(""), Longitude: strp(""), Elevation: strp(""),
		Metadata: strp(""), Tags: &empty, URL: strp("")})
	if err != nil {
		t.Fatal(err)
	}
	if u.Latitude != "" || u.Longitude != "" || u.Elevation != "" || u.Metadata != "" || u.Tags != nil || u.URL != "" {
		t.Fatalf("unset channel = %+v", u)
	}

	// Bad settings are refused with a message naming the field, and
	// nothing changes.
	before := mustFindChannel(t, s, c.ID)
	for _, tt := range []struct {
		u    auth.ChannelUpdate
		want string
	}{
		{auth.ChannelUpdate{Latitude: strp("91")}, "latitude"},
		{auth.ChannelUpdate{Longitude: strp("east")}, "longitude"},
		{auth.ChannelUpdate{Elevation: strp("1e9")}, "elevation"},
		{auth.ChannelUpdate{Metadata: strp(strings.Repeat("m", channels.MaxMetadataLen+1))}, "metadata"},
		{auth.ChannelUpdate{Tags: &[]string{"a,b"}}, "tag"},
		{auth.ChannelUpdate{URL: strp("ftp://example.com")}, "url"},
	} {
		_, err := s.UpdateChannel(ctx, c.ID, tt.u)
		wantCode(t, err, channels.EINVALID)
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %q does not name %s", err, tt.want)
		}
	}
	if _, err := s.CreateChannel(ctx, auth.ChannelSpec{Name: "x", Tags: make([]string, 0)}); err != nil {
		t.Fatal(err)
	}
	many := make([]string, channels.MaxTags+1)
	for i := range many {
		many[i] = strings.Repeat("t", i+1)
	}
	_, err = s.CreateChannel(ctx, auth.ChannelSpec{Name: "y", Tags: many})
	wantCode(t, err, channels.EINVALID)
	if after := mustFindChannel(t, s, c.ID); !reflect.DeepEqual(after, before) {
		t.Fatalf("refused updates changed the channel:\n%+v\nwas\n%+v", after, before)
	}
}

func TestLocal_DeviceDescription(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.DefaultLimits())
	desc := "garden ESP32\nnext to the shed ☀"
	cr, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "d", Description: desc})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Device.Description != desc || mustFindDevice(t, s, cr.Device.ID).Description != desc {
		t.Fatalf("description %q, stored %q", cr.Device.Description, mustFindDevice(t, s, cr.Device.ID).Description)
	}
	if _, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "max", Description: strings.Repeat("d", channels.MaxDescriptionLen)}); err != nil {
		t.Fatalf("description at the limit: %v", err)
	}
	for _, bad := range []string{strings.Repeat("d", channels.MaxDescriptionLen+1), "\xff"} {
		_, err := s.CreateDevice(ctx, auth.DeviceSpec{Name: "x", Description: bad})
		wantCode(t, err, channels.EINVALID)
		if !strings.Contains(err.Error(), "device description must be valid UTF-8 of at most 2000 bytes") {
			t.Fatalf("error %q does not name the description", err)
		}
	}
	if list, _ := s.ListDevices(ctx); len(list) != 2 {
		t.Fatalf("%d devices stored, want 2", len(list))
	}
}

func TestLocal_UpdateDevice(t *testing.T) {
	ctx := context.Background()
	s := newTestLocal(t, auth.Limits{MaxDevices: 10, MaxChannelsPerDevice: 2})
	c1 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "one"})
	c2 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "two"})
	c3 := mustCreateChannel(t, s, auth.ChannelSpec{Name: "three"})
	cr := mustCreateDevice(t, s, "d", pubsub(c1.ID))
	id := cr.Device.ID
	r := s.Registry
	grants := func(gs ...auth.Grant) *[]auth.Grant { return &gs }

	// Name and description change alone; the grants stay.
	d, err := s.UpdateDevice(ctx, id, auth.DeviceUpdate{Name: strp("  renamed "), Description: strp("in the attic")})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "renamed" || d.Description != "in the attic" {
		t.Fatalf("updated device = %+v", d)
	}
	wantGrants(t, d, pubsub(c1.ID))
	if got := mustFindDevice(t, s, id); !reflect.DeepEqual(got, d) {
		t.Fatalf("stored\n%+v\nreturned\n%+v", got, d)
	}
	if d, err = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Description: strp("")}); err != nil || d.Name != "renamed" || d.Description != "" {
		t.Fatalf("clearing the description: %+v, %v", d, err)
	}

	// Grants replace all the old ones; a right the device loses ends at
	// once, one it gains starts at once.
	d, err = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Grants: grants(sub(c2.ID), pub(c3.ID))})
	if err != nil {
		t.Fatal(err)
	}
	wantGrants(t, d, sub(c2.ID), pub(c3.ID))
	wantGrants(t, mustFindDevice(t, s, id), sub(c2.ID), pub(c3.ID))
	wantErr(t, "CanSubscribe on a replaced grant", r.CanSubscribe(id, c1.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanPublish on a replaced grant", r.CanPublish(id, c1.ID, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanSubscribe on a new grant", r.CanSubscribe(id, c2.ID, ""), nil)
	wantErr(t, "CanPublish on a new grant", r.CanPublish(id, c3.ID, ""), nil)
	// Two grants on one channel count once, the later winning, as in
	// AuthorizeDevice; so the limit of two holds here.
	if d, err = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Grants: grants(pub(c1.ID), pubsub(c2.ID), sub(c1.ID))}); err != nil {
		t.Fatal(err)
	}
	wantGrants(t, d, sub(c1.ID), pubsub(c2.ID))
	// The credentials stay and no connection is closed.
	mustLogin(t, s, cr)
	s.revokes.want(t)

	before := mustFindDevice(t, s, id)
	for _, tt := range []struct {
		name string
		id   uint64
		u    auth.DeviceUpdate
		code string
		want string
	}{
		{"unknown device", 99, auth.DeviceUpdate{Name: strp("x")}, channels.ENOTFOUND, "device 99 not found"},
		{"blank name", id, auth.DeviceUpdate{Name: strp(" ")}, channels.EINVALID, "device name is required"},
		{"long name", id, auth.DeviceUpdate{Name: strp(strings.Repeat("n", channels.MaxNameLen+1))}, channels.EINVALID, "device name"},
		{"long description", id, auth.DeviceUpdate{Description: strp(strings.Repeat("d", channels.MaxDescriptionLen+1))}, channels.EINVALID, "device description"},
		{"description not UTF-8", id, auth.DeviceUpdate{Description: strp("\xff")}, channels.EINVALID, "device description"},
		{"over the channel limit", id, auth.DeviceUpdate{Grants: grants(pub(c1.ID), pub(c2.ID), pub(c3.ID))}, channels.ELIMIT, "limits.max_channels_per_device"},
		{"missing channel", id, auth.DeviceUpdate{Grants: grants(pub(99))}, channels.ENOTFOUND, "channel 99 not found"},
		{"missing channel before the limit", id, auth.DeviceUpdate{Grants: grants(pub(c1.ID), pub(c2.ID), pub(99))}, channels.ENOTFOUND, "channel 99 not found"},
		{"grant without rights", id, auth.DeviceUpdate{Grants: grants(auth.Grant{ChannelID: c1.ID})}, channels.EINVALID, "needs publish, subscribe or both"},
		{"good name, bad grants", id, auth.DeviceUpdate{Name: strp("new"), Grants: grants(pub(99))}, channels.ENOTFOUND, "channel 99"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := s.UpdateDevice(ctx, tt.id, tt.u)
			wantCode(t, err, tt.code)
			if d != nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("UpdateDevice = %+v, %v; want %q", d, err, tt.want)
			}
			if got := mustFindDevice(t, s, id); !reflect.DeepEqual(got, before) {
				t.Fatalf("a refused update changed the device:\n%+v\nwas\n%+v", got, before)
			}
			wantErr(t, "CanPublish after a refused update", r.CanPublish(id, c2.ID, ""), nil)
		})
	}

	// An empty list removes every grant.
	if d, err = s.UpdateDevice(ctx, id, auth.DeviceUpdate{Grants: grants()}); err != nil {
		t.Fatal(err)
	}
	wantGrants(t, d)
	wantErr(t, "CanPublish without grants", r.CanPublish(id, c2.ID, ""), auth.ErrNotAuthorized)
}

// wantErr fails unless err matches want: nil for success, or a sentinel
// that errors.Is must find.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s = %v, want nil", what, err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s = %v, want %v", what, err, want)
	}
}

// Device names and descriptions are printed by the CLI and shown in the
// console: control characters that drive a terminal are refused.
func TestLocal_DeviceTextControlCharacters(t *testing.T) {
	l := newTestLocal(t, auth.DefaultLimits())
	ctx := context.Background()
	for _, spec := range []auth.DeviceSpec{
		{Name: "esp\x1b[31m"},
		{Name: "two\nlines"},
		{Name: "ok", Description: "clear\x1b[2J"},
	} {
		if _, err := l.CreateDevice(ctx, spec); channels.ErrorCode(err) != channels.EINVALID {
			t.Errorf("CreateDevice(%q, %q) = %v, want EINVALID", spec.Name, spec.Description, err)
		}
	}
	c, err := l.CreateDevice(ctx, auth.DeviceSpec{Name: "esp32", Description: "line 1\nline 2"})
	if err != nil {
		t.Fatal(err)
	}
	bad := "x\x07"
	if _, err := l.UpdateDevice(ctx, c.Device.ID, auth.DeviceUpdate{Name: &bad}); channels.ErrorCode(err) != channels.EINVALID {
		t.Errorf("UpdateDevice with a bell in the name = %v, want EINVALID", err)
	}
}
