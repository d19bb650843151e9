package admin

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
)

// openLocalAt opens dir's database as serve does; closing the database is
// the caller's (or the test cleanup's).
func openLocalAt(t *testing.T, dir string) (*Local, *storage.DB) {
	t.Helper()
	db, err := storage.Open(DBPath(dir), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l, err := NewLocal(context.Background(), db, auth.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return l, db
}

// serveLogged is serveLocal with the handler's log written to logw (debug
// level and up).
func serveLogged(t *testing.T, logw *syncBuffer) (*Local, *Client) {
	t.Helper()
	dir := t.TempDir()
	l, _ := openLocalAt(t, dir)
	srv, err := Listen(dir, l, slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return l, c
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// wantForbidden fails unless err is EFORBIDDEN wrapping sentinel.
func wantForbidden(t *testing.T, what string, err, sentinel error) {
	t.Helper()
	if channels.ErrorCode(err) != channels.EFORBIDDEN || !errors.Is(err, sentinel) {
		t.Fatalf("%s: %v (code %s); want %s wrapping %v", what, err, channels.ErrorCode(err), channels.EFORBIDDEN, sentinel)
	}
}

func isUserKey(k string) bool {
	return len(k) == 16 && strings.Trim(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == ""
}

// The user API key is made on first use, stored, and the same through the
// socket and after a restart.
func TestAccount_UserKeyMadeOnceAndKept(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, db := openLocalAt(t, dir)
	if a, err := db.Account(ctx); err != nil || a.UserAPIKey != "" {
		t.Fatalf("before first use: %+v, %v", a, err)
	}
	info, err := l.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !isUserKey(info.UserAPIKey) || info.PasswordSet || info.PasswordChangedAt != nil {
		t.Fatalf("first Account = %+v", info)
	}
	if a, _ := db.Account(ctx); a.UserAPIKey != info.UserAPIKey {
		t.Fatalf("stored key %q, shown %q", a.UserAPIKey, info.UserAPIKey)
	}
	again, _ := l.Account(ctx)
	if again.UserAPIKey != info.UserAPIKey {
		t.Fatalf("second Account made a new key: %q, then %q", info.UserAPIKey, again.UserAPIKey)
	}
	srv, err := Listen(dir, l, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Dial(dir)
	if err != nil {
		t.Fatal(err)
	}
	if remote, err := c.Account(ctx); err != nil || *remote != *info {
		t.Fatalf("through the socket: %+v, %v; want %+v", remote, err, info)
	}
	c.Close()
	srv.Close()
	db.Close()
	l2, _ := openLocalAt(t, dir)
	if after, err := l2.Account(ctx); err != nil || after.UserAPIKey != info.UserAPIKey {
		t.Fatalf("after restart: %+v, %v; want key %q", after, err, info.UserAPIKey)
	}
}

func TestAccount_VerifyAndRegenerateUserKey(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	for _, s := range []Service{l, c} {
		info, err := s.Account(ctx)
		if err != nil {
			t.Fatal(err)
		}
		key := info.UserAPIKey
		if err := s.VerifyUserKey(ctx, key); err != nil {
			t.Fatalf("right key: %v", err)
		}
		for _, wrong := range []string{"", strings.ToLower(key), key[:15], key + "A", " " + key, "AAAAAAAAAAAAAAAA"} {
			wantForbidden(t, "key "+wrong, s.VerifyUserKey(ctx, wrong), auth.ErrBadUserKey)
		}
		next, err := s.RegenerateUserKey(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !isUserKey(next.UserAPIKey) || next.UserAPIKey == key {
			t.Fatalf("regenerated %q from %q", next.UserAPIKey, key)
		}
		// The old key stops working at once, on either side.
		for _, s2 := range []Service{l, c} {
			wantForbidden(t, "old key", s2.VerifyUserKey(ctx, key), auth.ErrBadUserKey)
			if err := s2.VerifyUserKey(ctx, next.UserAPIKey); err != nil {
				t.Fatalf("new key: %v", err)
			}
		}
		if stored, _ := l.db.Account(ctx); stored.UserAPIKey != next.UserAPIKey {
			t.Fatalf("stored %q, want %q", stored.UserAPIKey, next.UserAPIKey)
		}
	}
}

func TestAccount_Password(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	for _, s := range []Service{l, c} {
		wantForbidden(t, "no password set", s.VerifyPassword(ctx, "anything at all"), auth.ErrBadPassword)
	}
	// Bad passwords are refused with a message naming the rule, and
	// change nothing.
	for _, bad := range []string{"", "short", strings.Repeat("x", 1025), "abcdefgh\xff", "abcdefg\xff"} {
		err := c.SetPassword(ctx, bad)
		if channels.ErrorCode(err) != channels.EINVALID || !strings.HasPrefix(err.Error(), "password is ") {
			t.Fatalf("SetPassword(%.10q) = %v", bad, err)
		}
	}
	if info, _ := l.Account(ctx); info.PasswordSet {
		t.Fatal("a refused password was set")
	}

	if err := c.SetPassword(ctx, "first password"); err != nil {
		t.Fatal(err)
	}
	info, err := c.Account(ctx)
	if err != nil || !info.PasswordSet || info.PasswordChangedAt == nil {
		t.Fatalf("after set: %+v, %v", info, err)
	}
	for _, s := range []Service{l, c} {
		if err := s.VerifyPassword(ctx, "first password"); err != nil {
			t.Fatalf("right password: %v", err)
		}
		for _, wrong := range []string{"", "first passwor", "First password", "first password ", strings.Repeat("y", 2000),
			"first password\xff", "first passwor\xff"} {
			wantForbidden(t, "wrong password", s.VerifyPassword(ctx, wrong), auth.ErrBadPassword)
		}
	}
	if err := l.SetPassword(ctx, "second password"); err != nil {
		t.Fatal(err)
	}
	wantForbidden(t, "old password", c.VerifyPassword(ctx, "first password"), auth.ErrBadPassword)
	if err := c.VerifyPassword(ctx, "second password"); err != nil {
		t.Fatal(err)
	}
	info2, _ := c.Account(ctx)
	if !info2.PasswordChangedAt.After(*info.PasswordChangedAt) {
		t.Fatalf("PasswordChangedAt went from %v to %v", info.PasswordChangedAt, info2.PasswordChangedAt)
	}
	if info2.UserAPIKey != info.UserAPIKey {
		t.Fatal("setting the password changed the user API key")
	}
	stored, _ := l.db.Account(ctx)
	if !strings.HasPrefix(stored.PasswordHash, "$argon2id$") || strings.Contains(stored.PasswordHash, "second password") {
		t.Fatalf("stored hash %q", stored.PasswordHash)
	}
}

// PasswordChangedAt moves forward with every change, even when the clock
// stands still or goes back.
func TestAccount_PasswordChangedAtIncreases(t *testing.T) {
	ctx := context.Background()
	l, _ := openLocalAt(t, t.TempDir())
	clock := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	l.account.now = func() time.Time { return clock }
	var last time.Time
	for i, step := range []time.Duration{0, 0, 0, -time.Hour, 2 * time.Hour} {
		clock = clock.Add(step)
		if err := l.SetPassword(ctx, "password number"); err != nil {
			t.Fatal(err)
		}
		info, _ := l.Account(ctx)
		if !info.PasswordChangedAt.After(last) {
			t.Fatalf("change %d: PasswordChangedAt %v, not after %v", i, info.PasswordChangedAt, last)
		}
		last = *info.PasswordChangedAt
	}
	if !last.Equal(clock) {
		t.Fatalf("after the clock moved on: %v, want %v", last, clock)
	}
}

// A change made offline (another Local on the file) is seen by the next
// Local that opens it; a running Local sees the changes made through its
// socket.
func TestAccount_SeenAfterOfflineChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	l, db := openLocalAt(t, dir)
	info, _ := l.Account(ctx)
	db.Close()

	offline, db2 := openLocalAt(t, dir)
	if err := offline.SetPassword(ctx, "set offline"); err != nil {
		t.Fatal(err)
	}
	key, err := offline.RegenerateUserKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db2.Close()

	next, _ := openLocalAt(t, dir)
	if err := next.VerifyPassword(ctx, "set offline"); err != nil {
		t.Fatal(err)
	}
	wantForbidden(t, "key from before", next.VerifyUserKey(ctx, info.UserAPIKey), auth.ErrBadUserKey)
	if err := next.VerifyUserKey(ctx, key.UserAPIKey); err != nil {
		t.Fatal(err)
	}
}

func TestAccount_SetupToken(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	wantForbidden(t, "no token opened", c.RedeemSetupToken(ctx, "", "good password"), auth.ErrSetupToken)
	first, err := l.NewSetupToken()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := l.NewSetupToken()
	if err != nil {
		t.Fatal(err)
	}
	if len(tok) != 26 || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz") != "" || tok == first {
		t.Fatalf("tokens %q, %q", first, tok)
	}
	wantForbidden(t, "replaced token", c.RedeemSetupToken(ctx, first, "good password"), auth.ErrSetupToken)
	for _, wrong := range []string{"", strings.ToUpper(tok), tok[:25], tok + "a"} {
		wantForbidden(t, "wrong token", c.RedeemSetupToken(ctx, wrong, "good password"), auth.ErrSetupToken)
	}
	// A password that breaks the rules leaves the token open.
	if err := c.RedeemSetupToken(ctx, tok, "short"); channels.ErrorCode(err) != channels.EINVALID {
		t.Fatalf("short password: %v", err)
	}
	if err := c.RedeemSetupToken(ctx, tok, "good password"); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyPassword(ctx, "good password"); err != nil {
		t.Fatal(err)
	}
	wantForbidden(t, "second redeem", c.RedeemSetupToken(ctx, tok, "other password"), auth.ErrSetupToken)
	wantForbidden(t, "second redeem, local", l.RedeemSetupToken(ctx, tok, "other password"), auth.ErrSetupToken)
	if err := l.VerifyPassword(ctx, "good password"); err != nil {
		t.Fatalf("a refused redeem changed the password: %v", err)
	}
	if tok, err := l.NewSetupToken(); tok != "" || err != nil {
		t.Fatalf("NewSetupToken with a password set = %q, %v", tok, err)
	}
}

// Setting the password by other means spends an open token.
func TestAccount_SetPasswordEndsSetupToken(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	tok, _ := l.NewSetupToken()
	if err := c.SetPassword(ctx, "chosen on the CLI"); err != nil {
		t.Fatal(err)
	}
	wantForbidden(t, "redeem after set-password", c.RedeemSetupToken(ctx, tok, "chosen in a browser"), auth.ErrSetupToken)
	if err := l.VerifyPassword(ctx, "chosen on the CLI"); err != nil {
		t.Fatal(err)
	}
}

// Of concurrent redeems of one token, exactly one wins.
func TestAccount_SetupTokenRedeemedOnce(t *testing.T) {
	ctx := context.Background()
	l, c := serveLocal(t)
	tok, _ := l.NewSetupToken()
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var s Service = l
			if i%2 == 1 {
				s = c
			}
			errs[i] = s.RedeemSetupToken(ctx, tok, "password "+strings.Repeat("x", i+1))
		})
	}
	wg.Wait()
	won := -1
	for i, err := range errs {
		if err == nil {
			if won >= 0 {
				t.Fatalf("redeems %d and %d both won", won, i)
			}
			won = i
			continue
		}
		wantForbidden(t, "losing redeem", err, auth.ErrSetupToken)
	}
	if won < 0 {
		t.Fatal("no redeem won")
	}
	if err := l.VerifyPassword(ctx, "password "+strings.Repeat("x", won+1)); err != nil {
		t.Fatalf("the winner's password: %v", err)
	}
}

// No password, key or token reaches the admin socket's log, whatever
// the outcome.
func TestAccount_NoSecretsInLog(t *testing.T) {
	ctx := context.Background()
	var logw syncBuffer
	l, c := serveLogged(t, &logw)
	info, err := c.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := l.NewSetupToken()
	_ = c.RedeemSetupToken(ctx, tok+"x", "wrong-token-password")
	_ = c.RedeemSetupToken(ctx, tok, "sh0rt")
	_ = c.RedeemSetupToken(ctx, tok, "redeemed-password")
	_ = c.SetPassword(ctx, "cli-set-password")
	_ = c.SetPassword(ctx, "t1ny")
	_ = c.VerifyPassword(ctx, "wrong-verify-password")
	_ = c.VerifyPassword(ctx, "cli-set-password")
	_ = c.VerifyUserKey(ctx, info.UserAPIKey)
	_ = c.VerifyUserKey(ctx, "WRONGKEY00000000")
	next, _ := c.RegenerateUserKey(ctx)
	out := logw.String()
	for _, secret := range []string{tok, info.UserAPIKey, next.UserAPIKey, "WRONGKEY00000000", "wrong-token-password",
		"sh0rt", "redeemed-password", "cli-set-password", "t1ny", "wrong-verify-password", "argon2id"} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds %q:\n%s", secret, out)
		}
	}
	// The log does record the operations.
	for _, op := range []string{"op=account.redeem_setup", "op=account.set_password", "op=account.verify_password", "op=account.regenerate_key"} {
		if !strings.Contains(out, op) {
			t.Errorf("log lacks %s:\n%s", op, out)
		}
	}
}

// After the first load the Local answers from memory: a record written
// behind its back (which only an offline command could do, and only while
// no server runs) is not read again.
func TestAccount_KeptInMemory(t *testing.T) {
	ctx := context.Background()
	l, db := openLocalAt(t, t.TempDir())
	info, err := l.Account(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PutAccount(ctx, &auth.Account{UserAPIKey: "OTHERKEY00000000"}); err != nil {
		t.Fatal(err)
	}
	if err := l.VerifyUserKey(ctx, info.UserAPIKey); err != nil {
		t.Fatalf("the loaded key: %v", err)
	}
	wantForbidden(t, "key written behind the Local's back", l.VerifyUserKey(ctx, "OTHERKEY00000000"), auth.ErrBadUserKey)
}
