package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
	"github.com/feedmq/feedmq/storage"
	"github.com/feedmq/feedmq/storage/dbcopy"
	"github.com/feedmq/feedmq/storage/postgres"
)

func newDBCommand() *cobra.Command {
	cmd := newGroupCommand("db", "Move a database between engines (bbolt file, PostgreSQL)")
	cmd.AddCommand(newDBCopyCommand())
	return cmd
}

// copyEnd is one side of a copy, opened.
type copyEnd struct {
	db    dbcopy.Destination
	name  string // for messages: the directory, or the URL without secrets
	close func() error
}

func newDBCopyCommand() *cobra.Command {
	var (
		from, to        string
		replace, verify bool
		batch           int
	)
	cmd := &cobra.Command{
		Use:   "copy --from DIR|URL --to DIR|URL [--replace] [--verify]",
		Short: "Copy everything a database holds into another, keeping every ID",
		Long: `Copy channels with their feeds, devices with their grants and access rules,
bindings, the owner account and the shared access rules from one database to
another: a data directory (its bbolt file feedmq.db) or a PostgreSQL database
(a postgres:// or postgresql:// URL); --from also takes a backup file
written by "feedmq backup". Channel, device, binding and entry IDs
and creation times are kept, so URLs, topics, API keys and device passwords
go on working; feeds are copied in batches.

Stop every feedmq serve using the source first: the copy reads it piece by
piece, and entries written meanwhile may be missed. A data directory's
database cannot be open in serve anyway. The destination must hold no
channels, devices, bindings or shared access rules (an account alone, as a
fresh instance makes, is replaced); --replace deletes whatever it holds
first. If a copy fails midway, run it again with --replace.

A PostgreSQL destination gets feedmq's schema if it has none; give feedmq a
database of its own. PostgreSQL keeps times to the microsecond.`,
		Example: `  feedmq db copy --from /var/lib/feedmq --to 'postgres://feedmq@db1/feedmq?sslmode=verify-full'
  feedmq db copy --from 'postgres://feedmq@db1/feedmq' --to ./feedmq-data --verify`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return errors.New("--from and --to are required, e.g. feedmq db copy --from ./feedmq-data --to postgres://feedmq@localhost/feedmq")
			}
			if batch < 1 || batch > 100000 {
				return fmt.Errorf("--batch must be 1 to 100000, not %d", batch)
			}
			if sameEnd(from, to) {
				return errors.New("--from and --to name the same database")
			}
			ctx := cmd.Context()
			src, err := openCopyEnd(ctx, from, false)
			if err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			defer src.close()
			dst, err := openCopyEnd(ctx, to, true)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer dst.close()
			if same, err := sameDatabase(ctx, src.db, dst.db); err != nil {
				return err
			} else if same {
				return errors.New("--from and --to name the same database")
			}
			progress := cmd.ErrOrStderr()
			res, err := dbcopy.Copy(ctx, src.db, dst.db, dbcopy.Options{Replace: replace, BatchSize: batch,
				Progress: func(c *channels.Channel, n uint64) {
					fmt.Fprintf(progress, "channel %d: %s\n", c.ID, plural(n, "entry"))
				}})
			if errors.Is(err, dbcopy.ErrNotEmpty) {
				return fmt.Errorf("%s: %w; copy with --replace to delete what it holds", dst.name, err)
			}
			if err != nil {
				return fmt.Errorf("copy from %s to %s: %w", src.name, dst.name, err)
			}
			if verify {
				diffs, err := dbcopy.Diff(ctx, src.db, dst.db, batch)
				if err != nil {
					return fmt.Errorf("verify: %w", err)
				}
				if len(diffs) > 0 {
					for _, d := range diffs {
						fmt.Fprintln(progress, d)
					}
					return fmt.Errorf("verify: the copy differs from %s (was the source written meanwhile?)", src.name)
				}
			}
			if err := dst.close(); err != nil {
				return fmt.Errorf("close %s: %w", dst.name, err)
			}
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"from": src.name, "to": dst.name, "copied": res, "verified": verify})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Copied %s (%s), %s, %s and %s from %s to %s%s.\n",
				plural(uint64(res.Channels), "channel"), plural(res.Entries, "entry"), plural(uint64(res.Devices), "device"),
				plural(uint64(res.Bindings), "binding"), plural(uint64(res.Rules), "shared access rule"),
				src.name, dst.name, map[bool]string{true: ", verified", false: ""}[verify])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the database to copy: a data directory or a postgres:// URL (required)")
	f.StringVar(&to, "to", "", "the database to copy into: a data directory or a postgres:// URL (required)")
	f.BoolVar(&replace, "replace", false, "delete everything the destination holds before copying")
	f.BoolVar(&verify, "verify", false, "read both databases again after the copy and compare them")
	f.IntVar(&batch, "batch", 1000, "entries read and written at a time")
	addJSONFlag(cmd)
	return cmd
}

// isPostgresURL reports whether s names a PostgreSQL database.
func isPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// sameEnd reports whether two --from/--to values name one database.
func sameEnd(a, b string) bool {
	if isPostgresURL(a) || isPostgresURL(b) {
		return a == b
	}
	x, err1 := filepath.Abs(a)
	y, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && x == y
}

// sameDatabase reports whether two opened ends are one PostgreSQL
// database, which different URLs can name: copying it onto itself with
// --replace would empty the source.
func sameDatabase(ctx context.Context, a, b any) (bool, error) {
	type identified interface {
		Identity(context.Context) (string, error)
	}
	x, ok1 := a.(identified)
	y, ok2 := b.(identified)
	if !ok1 || !ok2 {
		return false, nil
	}
	ix, err := x.Identity(ctx)
	if err != nil {
		return false, fmt.Errorf("--from: %w", err)
	}
	iy, err := y.Identity(ctx)
	if err != nil {
		return false, fmt.Errorf("--to: %w", err)
	}
	return ix == iy, nil
}

// redactURL is u without its password and parameters, for messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "the PostgreSQL URL"
	}
	u.RawQuery, u.Fragment = "", ""
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

// openCopyEnd opens a data directory's database or a PostgreSQL one. A
// source directory must hold a database; a destination one is created.
func openCopyEnd(ctx context.Context, s string, create bool) (*copyEnd, error) {
	if isPostgresURL(s) {
		db, err := postgres.Open(ctx, s, postgres.Options{})
		if err != nil {
			return nil, err
		}
		return &copyEnd{db: db, name: redactURL(s), close: onceClose(db.Close)}, nil
	}
	if strings.Contains(s, "://") {
		// Not echoed: it may hold a password.
		return nil, errors.New("the URL is not a postgres:// or postgresql:// URL; give one of those or a data directory")
	}
	for _, kw := range []string{"host=", "dbname=", "user=", "password="} {
		if strings.Contains(s, kw) {
			return nil, errors.New("give the PostgreSQL database as a postgres:// URL, not as key=value settings")
		}
	}
	path, o := admin.DBPath(s), storage.Options{}
	if fi, err := os.Stat(s); !create && err == nil && fi.Mode().IsRegular() {
		// A backup file ("feedmq backup") is a database file itself,
		// only read.
		path, o.ReadOnly = s, true
	}
	if !create {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no feedmq database in %s (%s); give the data directory of your instance", s, path)
		}
	}
	db, err := storage.Open(path, o)
	if errors.Is(err, storage.ErrLocked) {
		return nil, fmt.Errorf("%w; stop feedmq serve on %s first", err, s)
	}
	if err != nil {
		return nil, err
	}
	return &copyEnd{db: db, name: s, close: onceClose(db.Close)}, nil
}

// onceClose makes a close function safe to call twice: the second call
// (the deferred one) returns nil.
func onceClose(f func() error) func() error {
	done := false
	return func() error {
		if done {
			return nil
		}
		done = true
		return f()
	}
}
