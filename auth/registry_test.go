package auth_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Fixture channels of newTestRegistry.
const (
	chPrivate = 1 // private, keys writeKey1/readKey1
	chPublic  = 2 // public, keys writeKey2/readKey2
	chOther   = 3 // private, keys writeKey3/readKey3
	chMissing = 99

	writeKey1 = "WRITE1AAAAAAAAAA"
	readKey1  = "READ1AAAAAAAAAAA"
	writeKey2 = "WRITE2AAAAAAAAAA"
	readKey2  = "READ2AAAAAAAAAAA"
	writeKey3 = "WRITE3AAAAAAAAAA"
	readKey3  = "READ3AAAAAAAAAAA"
)

// Fixture devices of newTestRegistry: devPub may only publish to
// chPrivate, devSub only subscribe, devBoth both (and publish to chOther),
// devNone has no grants.
const (
	devPub  = 1
	devSub  = 2
	devBoth = 3
	devNone = 4
)

// testDevice returns a device whose client ID and username are "client<id>"
// and whose password is "password<id>".
func testDevice(id uint64, grants ...auth.Grant) *auth.Device {
	return &auth.Device{
		ID:           id,
		Name:         fmt.Sprintf("device %d", id),
		ClientID:     fmt.Sprintf("client%d", id),
		Username:     fmt.Sprintf("client%d", id),
		PasswordHash: auth.HashPassword(fmt.Sprintf("password%d", id)),
		Channels:     grants,
	}
}

func testChannel(id uint64, public bool, write, read string) *channels.Channel {
	return &channels.Channel{
		ID: id, Name: fmt.Sprintf("channel %d", id), Public: public,
		Fields: channels.DefaultFields(), WriteKey: write, ReadKey: read,
	}
}

func newTestRegistry(t *testing.T) *auth.Registry {
	t.Helper()
	r := auth.NewRegistry()
	r.PutChannel(testChannel(chPrivate, false, writeKey1, readKey1))
	r.PutChannel(testChannel(chPublic, true, writeKey2, readKey2))
	r.PutChannel(testChannel(chOther, false, writeKey3, readKey3))
	r.PutDevice(testDevice(devPub, auth.Grant{ChannelID: chPrivate, Publish: true}))
	r.PutDevice(testDevice(devSub, auth.Grant{ChannelID: chPrivate, Subscribe: true}))
	r.PutDevice(testDevice(devBoth,
		auth.Grant{ChannelID: chPrivate, Publish: true, Subscribe: true},
		auth.Grant{ChannelID: chOther, Publish: true}))
	r.PutDevice(testDevice(devNone))
	return r
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

func TestRegistry_Authenticate(t *testing.T) {
	r := newTestRegistry(t)
	tests := []struct {
		name                         string
		clientID, username, password string
		wantID                       uint64
		wantErr                      error
	}{
		{"ok", "client1", "client1", "password1", devPub, nil},
		{"ok other device", "client3", "client3", "password3", devBoth, nil},
		{"unknown username", "nobody", "nobody", "password1", 0, auth.ErrBadCredentials},
		{"empty username", "client1", "", "password1", 0, auth.ErrBadCredentials},
		{"wrong password", "client1", "client1", "password2", 0, auth.ErrBadCredentials},
		{"empty password", "client1", "client1", "", 0, auth.ErrBadCredentials},
		{"other device's password", "client1", "client1", "password3", 0, auth.ErrBadCredentials},
		{"wrong password and client ID", "client2", "client1", "nope", 0, auth.ErrBadCredentials},
		{"other client ID", "client2", "client1", "password1", 0, auth.ErrClientID},
		{"empty client ID", "", "client1", "password1", 0, auth.ErrClientID},
		{"client ID case differs", "CLIENT1", "client1", "password1", 0, auth.ErrClientID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := r.Authenticate(tt.clientID, tt.username, tt.password)
			wantErr(t, "Authenticate", err, tt.wantErr)
			if id != tt.wantID {
				t.Fatalf("Authenticate returned device %d, want %d", id, tt.wantID)
			}
			if err == nil {
				return
			}
			if code := channels.ErrorCode(err); code != channels.EFORBIDDEN {
				t.Fatalf("ErrorCode(%v) = %q, want %q", err, code, channels.EFORBIDDEN)
			}
			// The two refusals map to different CONNACK codes, so they
			// must not be confused.
			if tt.wantErr == auth.ErrBadCredentials && errors.Is(err, auth.ErrClientID) ||
				tt.wantErr == auth.ErrClientID && errors.Is(err, auth.ErrBadCredentials) {
				t.Fatalf("Authenticate = %v matches both ErrBadCredentials and ErrClientID", err)
			}
			if strings.Contains(err.Error(), tt.password) && tt.password != "" {
				t.Fatalf("error %q reveals the password", err)
			}
		})
	}
}

func TestRegistry_CanPublishCanSubscribe(t *testing.T) {
	r := newTestRegistry(t)
	tests := []struct {
		name    string
		device  uint64
		ch      uint64
		key     string
		wantPub error
		wantSub error
	}{
		// Grants.
		{"publish grant only", devPub, chPrivate, "", nil, auth.ErrNotAuthorized},
		{"subscribe grant only", devSub, chPrivate, "", auth.ErrNotAuthorized, nil},
		{"both grants", devBoth, chPrivate, "", nil, nil},
		{"publish grant on other channel", devBoth, chOther, "", nil, auth.ErrNotAuthorized},
		{"no grant", devNone, chPrivate, "", auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"grant is per channel", devPub, chOther, "", auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"unknown device", 42, chPrivate, "", auth.ErrNotAuthorized, auth.ErrNotAuthorized},

		// Anonymous connections and API keys.
		{"anonymous without key", auth.Anonymous, chPrivate, "", auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous write key", auth.Anonymous, chPrivate, writeKey1, nil, auth.ErrNotAuthorized},
		{"anonymous read key", auth.Anonymous, chPrivate, readKey1, auth.ErrNotAuthorized, nil},
		{"anonymous wrong key", auth.Anonymous, chPrivate, "WRONGKEYAAAAAAAA", auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous other channel's write key", auth.Anonymous, chPrivate, writeKey3, auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous other channel's read key", auth.Anonymous, chPrivate, readKey3, auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous lower-case write key", auth.Anonymous, chPrivate, strings.ToLower(writeKey1), auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous write key prefix", auth.Anonymous, chPrivate, writeKey1[:15], auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"anonymous write key plus one", auth.Anonymous, chPrivate, writeKey1 + "A", auth.ErrNotAuthorized, auth.ErrNotAuthorized},
		{"device with write key", devNone, chPrivate, writeKey1, nil, auth.ErrNotAuthorized},
		{"device with read key", devNone, chPrivate, readKey1, auth.ErrNotAuthorized, nil},
		{"grant with wrong key", devBoth, chPrivate, "WRONGKEYAAAAAAAA", nil, nil},

		// Public channels are readable by anyone, writable only as usual.
		{"public anonymous", auth.Anonymous, chPublic, "", auth.ErrNotAuthorized, nil},
		{"public device without grant", devNone, chPublic, "", auth.ErrNotAuthorized, nil},
		{"public wrong key", auth.Anonymous, chPublic, "WRONGKEYAAAAAAAA", auth.ErrNotAuthorized, nil},
		{"public write key", auth.Anonymous, chPublic, writeKey2, nil, nil},

		// Unknown channels, whoever asks.
		{"unknown channel anonymous", auth.Anonymous, chMissing, "", auth.ErrUnknownChannel, auth.ErrUnknownChannel},
		{"unknown channel device", devBoth, chMissing, "", auth.ErrUnknownChannel, auth.ErrUnknownChannel},
		{"unknown channel with a key", auth.Anonymous, chMissing, writeKey1, auth.ErrUnknownChannel, auth.ErrUnknownChannel},
		{"channel zero", devBoth, 0, "", auth.ErrUnknownChannel, auth.ErrUnknownChannel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pub := r.CanPublish(tt.device, tt.ch, tt.key)
			wantErr(t, fmt.Sprintf("CanPublish(%d, %d, %q)", tt.device, tt.ch, tt.key), pub, tt.wantPub)
			sub := r.CanSubscribe(tt.device, tt.ch, tt.key)
			wantErr(t, fmt.Sprintf("CanSubscribe(%d, %d, %q)", tt.device, tt.ch, tt.key), sub, tt.wantSub)
			for _, err := range []error{pub, sub} {
				if err == nil {
					continue
				}
				want := channels.EFORBIDDEN
				if errors.Is(err, auth.ErrUnknownChannel) {
					want = channels.ENOTFOUND
				}
				if code := channels.ErrorCode(err); code != want {
					t.Fatalf("ErrorCode(%v) = %q, want %q", err, code, want)
				}
				// A refusal must not echo a key that might be right for
				// another channel.
				if tt.key != "" && strings.Contains(err.Error(), tt.key) {
					t.Fatalf("error %q reveals the key", err)
				}
			}
		})
	}
}

func TestRegistry_Channel(t *testing.T) {
	r := newTestRegistry(t)
	c, ok := r.Channel(chPrivate)
	if !ok || c.ID != chPrivate || c.WriteKey != writeKey1 || c.ReadKey != readKey1 || c.Public {
		t.Fatalf("Channel(%d) = %+v, %v", chPrivate, c, ok)
	}
	if c, ok := r.Channel(chMissing); ok || c != nil {
		t.Fatalf("Channel(%d) = %+v, %v; want nil, false", chMissing, c, ok)
	}
}

// TestRegistry_Copies checks that the registry keeps its own copies, so a
// caller reusing a value after Put cannot change what the broker sees.
func TestRegistry_Copies(t *testing.T) {
	r := newTestRegistry(t)

	c := testChannel(10, false, "COPYWRITEAAAAAAA", "COPYREADAAAAAAAA")
	r.PutChannel(c)
	c.WriteKey, c.ReadKey, c.Public = "CHANGEDAAAAAAAAA", "CHANGEDAAAAAAAAA", true
	wantErr(t, "CanPublish with the key put", r.CanPublish(auth.Anonymous, 10, "COPYWRITEAAAAAAA"), nil)
	wantErr(t, "CanPublish with the key changed after Put", r.CanPublish(auth.Anonymous, 10, "CHANGEDAAAAAAAAA"), auth.ErrNotAuthorized)
	wantErr(t, "CanSubscribe after Public changed after Put", r.CanSubscribe(auth.Anonymous, 10, ""), auth.ErrNotAuthorized)

	d := testDevice(10, auth.Grant{ChannelID: 10, Publish: true})
	r.PutDevice(d)
	d.Channels[0].Subscribe = true
	d.Channels = append(d.Channels, auth.Grant{ChannelID: chPrivate, Publish: true})
	d.PasswordHash = auth.HashPassword("changed")
	wantErr(t, "CanPublish on the granted channel", r.CanPublish(10, 10, ""), nil)
	wantErr(t, "CanSubscribe after the grant changed after Put", r.CanSubscribe(10, 10, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanPublish after a grant was appended after Put", r.CanPublish(10, chPrivate, ""), auth.ErrNotAuthorized)
	if _, err := r.Authenticate("client10", "client10", "password10"); err != nil {
		t.Fatalf("Authenticate after the hash changed after Put = %v", err)
	}
}

func TestRegistry_PutChannelReplaces(t *testing.T) {
	r := newTestRegistry(t)
	r.PutChannel(testChannel(chPrivate, true, "NEWWRITEAAAAAAAA", "NEWREADAAAAAAAAA"))
	wantErr(t, "CanPublish with the old write key", r.CanPublish(auth.Anonymous, chPrivate, writeKey1), auth.ErrNotAuthorized)
	wantErr(t, "CanPublish with the new write key", r.CanPublish(auth.Anonymous, chPrivate, "NEWWRITEAAAAAAAA"), nil)
	wantErr(t, "CanSubscribe now that the channel is public", r.CanSubscribe(auth.Anonymous, chPrivate, ""), nil)
	// Replacing a channel keeps the grants on it.
	wantErr(t, "CanPublish by grant", r.CanPublish(devPub, chPrivate, ""), nil)
}

func TestRegistry_DeleteChannel(t *testing.T) {
	r := newTestRegistry(t)
	r.DeleteChannel(chPrivate)

	for _, dev := range []uint64{auth.Anonymous, devPub, devSub, devBoth} {
		wantErr(t, "CanPublish on the deleted channel", r.CanPublish(dev, chPrivate, writeKey1), auth.ErrUnknownChannel)
		wantErr(t, "CanSubscribe on the deleted channel", r.CanSubscribe(dev, chPrivate, readKey1), auth.ErrUnknownChannel)
	}
	if _, ok := r.Channel(chPrivate); ok {
		t.Fatal("Channel finds the deleted channel")
	}
	// Grants on other channels stay.
	wantErr(t, "CanPublish on another granted channel", r.CanPublish(devBoth, chOther, ""), nil)

	// The grants are gone, not merely hidden: a channel put again under the
	// same ID does not inherit them.
	r.PutChannel(testChannel(chPrivate, false, writeKey1, readKey1))
	for _, dev := range []uint64{devPub, devSub, devBoth} {
		wantErr(t, fmt.Sprintf("CanPublish(%d) on the channel put again", dev), r.CanPublish(dev, chPrivate, ""), auth.ErrNotAuthorized)
		wantErr(t, fmt.Sprintf("CanSubscribe(%d) on the channel put again", dev), r.CanSubscribe(dev, chPrivate, ""), auth.ErrNotAuthorized)
	}
	// The devices themselves are untouched.
	for _, dev := range []uint64{devPub, devSub, devBoth} {
		c := fmt.Sprintf("client%d", dev)
		if id, err := r.Authenticate(c, c, fmt.Sprintf("password%d", dev)); err != nil || id != dev {
			t.Fatalf("Authenticate(%s) after DeleteChannel = %d, %v", c, id, err)
		}
	}

	// Deleting a missing channel is a no-op.
	r.DeleteChannel(chMissing)
}

func TestRegistry_DeleteDevice(t *testing.T) {
	r := newTestRegistry(t)
	r.DeleteDevice(devBoth)

	if _, err := r.Authenticate("client3", "client3", "password3"); !errors.Is(err, auth.ErrBadCredentials) {
		t.Fatalf("Authenticate of a deleted device = %v, want ErrBadCredentials", err)
	}
	if r.CheckPassword(devBoth, "password3") {
		t.Fatal("CheckPassword of a deleted device = true")
	}
	// A connection that authenticated before the delete loses its rights.
	wantErr(t, "CanPublish by a deleted device", r.CanPublish(devBoth, chPrivate, ""), auth.ErrNotAuthorized)
	wantErr(t, "CanSubscribe by a deleted device", r.CanSubscribe(devBoth, chPrivate, ""), auth.ErrNotAuthorized)
	// Keys and public channels still work for it, as for anyone.
	wantErr(t, "CanPublish by a deleted device with the key", r.CanPublish(devBoth, chPrivate, writeKey1), nil)
	wantErr(t, "CanSubscribe by a deleted device to a public channel", r.CanSubscribe(devBoth, chPublic, ""), nil)
	// Others are untouched.
	if id, err := r.Authenticate("client1", "client1", "password1"); err != nil || id != devPub {
		t.Fatalf("Authenticate(client1) = %d, %v", id, err)
	}

	// Deleting again, or deleting a device never put, is a no-op.
	r.DeleteDevice(devBoth)
	r.DeleteDevice(42)
}

func TestRegistry_PutDeviceReplaces(t *testing.T) {
	t.Run("username changed", func(t *testing.T) {
		r := newTestRegistry(t)
		d := testDevice(devPub, auth.Grant{ChannelID: chPrivate, Publish: true})
		d.Username, d.ClientID = "renamed", "renamed"
		r.PutDevice(d)

		if _, err := r.Authenticate("client1", "client1", "password1"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("Authenticate with the old username = %v, want ErrBadCredentials", err)
		}
		if id, err := r.Authenticate("renamed", "renamed", "password1"); err != nil || id != devPub {
			t.Fatalf("Authenticate with the new username = %d, %v", id, err)
		}
		// The old username can be given to another device.
		other := testDevice(20)
		other.Username, other.ClientID = "client1", "client1"
		r.PutDevice(other)
		if id, err := r.Authenticate("client1", "client1", "password20"); err != nil || id != 20 {
			t.Fatalf("Authenticate with the reused username = %d, %v", id, err)
		}
		if id, err := r.Authenticate("renamed", "renamed", "password1"); err != nil || id != devPub {
			t.Fatalf("Authenticate of the renamed device = %d, %v", id, err)
		}
	})

	t.Run("usernames swapped", func(t *testing.T) {
		// The store forbids two devices sharing a username, so it renames
		// through a free name; the registry must end up right in any
		// order of puts, including one where a name is briefly shared.
		r := newTestRegistry(t)
		a := testDevice(devPub)
		a.Username, a.ClientID = "client2", "client2"
		b := testDevice(devSub)
		b.Username, b.ClientID = "client1", "client1"
		r.PutDevice(a)
		r.PutDevice(b)
		if id, err := r.Authenticate("client2", "client2", "password1"); err != nil || id != devPub {
			t.Fatalf("Authenticate(client2, password1) = %d, %v", id, err)
		}
		if id, err := r.Authenticate("client1", "client1", "password2"); err != nil || id != devSub {
			t.Fatalf("Authenticate(client1, password2) = %d, %v", id, err)
		}
	})

	t.Run("username taken over, then old owner deleted", func(t *testing.T) {
		r := newTestRegistry(t)
		b := testDevice(20)
		b.Username, b.ClientID = "client1", "client1"
		r.PutDevice(b)
		r.DeleteDevice(devPub) // the device that had "client1" before
		if id, err := r.Authenticate("client1", "client1", "password20"); err != nil || id != 20 {
			t.Fatalf("Authenticate of the username's new owner = %d, %v", id, err)
		}
	})

	t.Run("grants replaced", func(t *testing.T) {
		r := newTestRegistry(t)
		r.PutDevice(testDevice(devBoth, auth.Grant{ChannelID: chOther, Subscribe: true}))
		wantErr(t, "CanPublish on a dropped grant", r.CanPublish(devBoth, chPrivate, ""), auth.ErrNotAuthorized)
		wantErr(t, "CanSubscribe on a dropped grant", r.CanSubscribe(devBoth, chPrivate, ""), auth.ErrNotAuthorized)
		wantErr(t, "CanPublish on a narrowed grant", r.CanPublish(devBoth, chOther, ""), auth.ErrNotAuthorized)
		wantErr(t, "CanSubscribe on a widened grant", r.CanSubscribe(devBoth, chOther, ""), nil)
	})

	t.Run("password replaced", func(t *testing.T) {
		r := newTestRegistry(t)
		d := testDevice(devPub)
		d.PasswordHash = auth.HashPassword("new password")
		r.PutDevice(d)
		if _, err := r.Authenticate("client1", "client1", "password1"); !errors.Is(err, auth.ErrBadCredentials) {
			t.Fatalf("Authenticate with the old password = %v, want ErrBadCredentials", err)
		}
		if id, err := r.Authenticate("client1", "client1", "new password"); err != nil || id != devPub {
			t.Fatalf("Authenticate with the new password = %d, %v", id, err)
		}
	})
}

func TestRegistry_CheckPassword(t *testing.T) {
	r := newTestRegistry(t)
	tests := []struct {
		name     string
		device   uint64
		password string
		want     bool
	}{
		{"right", devPub, "password1", true},
		{"wrong", devPub, "password2", false},
		{"empty", devPub, "", false},
		{"unknown device", 42, "password42", false},
		{"anonymous", auth.Anonymous, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.CheckPassword(tt.device, tt.password); got != tt.want {
				t.Fatalf("CheckPassword(%d, %q) = %v, want %v", tt.device, tt.password, got, tt.want)
			}
		})
	}

	t.Run("after reset", func(t *testing.T) {
		d := testDevice(devPub)
		d.PasswordHash = auth.HashPassword("fresh")
		r.PutDevice(d)
		if r.CheckPassword(devPub, "password1") {
			t.Fatal("CheckPassword with the old password = true after the reset")
		}
		if !r.CheckPassword(devPub, "fresh") {
			t.Fatal("CheckPassword with the new password = false")
		}
	})
}

// TestRegistry_Concurrent checks lookups against a writer that keeps
// replacing devices and channels. Run it with -race. Device devBoth keeps
// its grant on chPrivate and channel chPrivate keeps writeKey1 in every
// version the writer puts, so those answers must never flicker.
func TestRegistry_Concurrent(t *testing.T) {
	r := newTestRegistry(t)
	const readers = 8
	iterations := 2000
	if testing.Short() {
		iterations = 200
	}

	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range iterations {
			r.PutChannel(testChannel(chPrivate, i%2 == 0, writeKey1, fmt.Sprintf("READ%012d", i)))
			r.PutDevice(testDevice(devBoth,
				auth.Grant{ChannelID: chPrivate, Publish: true, Subscribe: true},
				auth.Grant{ChannelID: chOther, Publish: i%2 == 0, Subscribe: i%2 == 1}))
			r.DeleteChannel(chOther)
			r.PutChannel(testChannel(chOther, false, writeKey3, readKey3))
			r.DeleteDevice(devNone)
			r.PutDevice(testDevice(devNone, auth.Grant{ChannelID: chOther, Publish: true}))
		}
	}()

	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if err := r.CanPublish(devBoth, chPrivate, ""); err != nil {
					t.Errorf("CanPublish(devBoth, chPrivate) = %v during updates", err)
					return
				}
				if err := r.CanSubscribe(devBoth, chPrivate, ""); err != nil {
					t.Errorf("CanSubscribe(devBoth, chPrivate) = %v during updates", err)
					return
				}
				if err := r.CanPublish(auth.Anonymous, chPrivate, writeKey1); err != nil {
					t.Errorf("CanPublish(anonymous, write key) = %v during updates", err)
					return
				}
				if err := r.CanPublish(auth.Anonymous, chPrivate, ""); !errors.Is(err, auth.ErrNotAuthorized) {
					t.Errorf("CanPublish(anonymous, no key) = %v during updates, want ErrNotAuthorized", err)
					return
				}
				// chOther and devNone come and go: any of the three
				// answers is fine, but nothing else.
				for _, err := range []error{
					r.CanPublish(devNone, chOther, ""),
					r.CanSubscribe(devBoth, chOther, ""),
				} {
					if err != nil && !errors.Is(err, auth.ErrNotAuthorized) && !errors.Is(err, auth.ErrUnknownChannel) {
						t.Errorf("check on a changing channel = %v", err)
						return
					}
				}
				if id, err := r.Authenticate("client3", "client3", "password3"); err != nil || id != devBoth {
					t.Errorf("Authenticate(client3) = %d, %v during updates", id, err)
					return
				}
				if _, err := r.Authenticate("client4", "client4", "password4"); err != nil && !errors.Is(err, auth.ErrBadCredentials) {
					t.Errorf("Authenticate(client4) = %v during updates", err)
					return
				}
				if !r.CheckPassword(devBoth, "password3") {
					t.Errorf("CheckPassword(devBoth) = false during updates")
					return
				}
				if c, ok := r.Channel(chPrivate); !ok || c.WriteKey != writeKey1 {
					t.Errorf("Channel(chPrivate) = %+v, %v during updates", c, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestChannelByName(t *testing.T) {
	r := auth.NewRegistry()
	r.PutChannel(&channels.Channel{ID: 1, Name: "Greenhouse"})
	r.PutChannel(&channels.Channel{ID: 2, Name: "Twin"})
	r.PutChannel(&channels.Channel{ID: 3, Name: "Twin"})
	if c, err := r.ChannelByName("Greenhouse"); err != nil || c.ID != 1 {
		t.Fatalf("Greenhouse: %v %v", c, err)
	}
	if _, err := r.ChannelByName("greenhouse"); !errors.Is(err, auth.ErrUnknownChannel) {
		t.Fatalf("case-sensitive lookup: %v", err)
	}
	if _, err := r.ChannelByName("Twin"); channels.ErrorCode(err) != channels.ECONFLICT {
		t.Fatalf("ambiguous name: %v", err)
	}
}

func TestRegistry_ChannelByWriteKey(t *testing.T) {
	r := newTestRegistry(t)
	if c, ok := r.ChannelByWriteKey(writeKey1); !ok || c.ID != chPrivate {
		t.Fatalf("write key 1: %v %v", c, ok)
	}
	for _, k := range []string{"", readKey1, "NOSUCHKEY0000000"} {
		if c, ok := r.ChannelByWriteKey(k); ok {
			t.Errorf("key %q finds channel %d", k, c.ID)
		}
	}
	// A new key replaces the old one at once.
	r.PutChannel(testChannel(chPrivate, false, "NEWWRITEKEY00001", readKey1))
	if _, ok := r.ChannelByWriteKey(writeKey1); ok {
		t.Error("the old write key still finds the channel")
	}
	if c, ok := r.ChannelByWriteKey("NEWWRITEKEY00001"); !ok || c.ID != chPrivate {
		t.Errorf("new write key: %v %v", c, ok)
	}
	// Another channel that took an old key keeps it when the first
	// channel changes or goes.
	r.PutChannel(testChannel(chOther, false, "NEWWRITEKEY00001", readKey3))
	r.DeleteChannel(chPrivate)
	if c, ok := r.ChannelByWriteKey("NEWWRITEKEY00001"); !ok || c.ID != chOther {
		t.Errorf("after delete: %v %v", c, ok)
	}
	r.DeleteChannel(chOther)
	if _, ok := r.ChannelByWriteKey("NEWWRITEKEY00001"); ok {
		t.Error("a deleted channel's key finds it")
	}
}
