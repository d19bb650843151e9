package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/storage"
)

// Database maintenance: backup, restore and check, and serve's background
// retention. backup and check work on a running server through the admin
// socket (the server reads its own live database in a read transaction)
// or, without one, on the file opened read-only. restore only works with
// no server running.

// backupAndCheck are the options of backup and check: the file is only
// read when no server runs.
var backupAndCheck = admin.Options{ReadOnly: true}

// noDBAdvice is what backup and check suggest for a directory without a
// database.
const noDBAdvice = "give the --data directory of your instance"

func newBackupCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "backup --output FILE",
		Short: "Write a consistent copy of the database, also while serve runs",
		Long: `Write a consistent copy of the database to a new file (permission 0600).
While serve runs, the server writes the copy itself from a read transaction,
so publishing goes on; the copy is the database as of the start of the
backup. Otherwise the database is read directly. An existing FILE is never
overwritten. Restore a copy with "feedmq restore".

With storage set to PostgreSQL the copy is a bbolt database file too, read
from one snapshot of the database while the nodes go on writing (a running
serve writes it on its own machine, else this command does). Load it into
PostgreSQL again with "feedmq db copy --from FILE --to URL --replace".`,
		Example: `  feedmq backup --output /var/backups/feedmq-$(date +%F).db`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return errors.New("--output is required, e.g. feedmq backup --output feedmq-backup.db")
			}
			path, err := filepath.Abs(output)
			if err != nil {
				return err
			}
			var res *admin.BackupResult
			err = withAdminOptions(cmd, backupAndCheck, noDBAdvice, func(ctx context.Context, a admin.Service) (err error) {
				res, err = a.Backup(ctx, path)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Backup written to %s: %d bytes, %s.\n", res.File, res.Bytes, countsString(res.Stats))
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "the new backup file (required)")
	addJSONFlag(cmd)
	return cmd
}

func newRestoreCommand() *cobra.Command {
	var (
		input string
		force bool
	)
	cmd := &cobra.Command{
		Use:   "restore --input FILE [--force]",
		Short: "Replace the database with a backup; serve must be stopped",
		Long: `Replace the database of the data directory with a backup made by
"feedmq backup". The backup is copied next to the database and checked first
(a feedmq database this version reads, passing "feedmq check"). The current
database is kept as feedmq.db.bak-<UTC time> and then replaced in one step.

Stop serve first: restore refuses to run while serve (or any feedmq
command) uses the database. An existing database is replaced only with
--force.`,
		Example: `  systemctl stop feedmq
  feedmq restore --data /var/lib/feedmq --input feedmq-2026-11-24.db --force
  systemctl start feedmq`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if input == "" {
				return errors.New("--input is required, e.g. feedmq restore --input feedmq-backup.db")
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.usesPostgres() {
				// Replacing a shared database under running nodes is what
				// db copy --replace does, with every node stopped first.
				return fmt.Errorf("restore replaces the database file in the data directory, but this instance keeps its data in PostgreSQL (storage %s); "+
					"stop every feedmq serve on it, then load the backup with: feedmq db copy --from BACKUP-FILE --to URL --replace", cfg.storageName())
			}
			if c, err := admin.Dial(cfg.dataDir()); err == nil {
				c.Close()
				return fmt.Errorf("feedmq serve is running on %s (its admin socket %s answers); stop it, then restore", cfg.dataDir(), cfg.socketPath())
			} else if !errors.Is(err, admin.ErrNoServer) {
				return err
			}
			res, err := storage.Restore(cmd.Context(), input, cfg.dbPath(), force, time.Now())
			if errors.Is(err, storage.ErrLocked) {
				return fmt.Errorf("%w; stop it, then restore", err)
			}
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), map[string]any{
					"database": cfg.dbPath(), "previous": res.Previous,
					"channels": res.Channels, "devices": res.Devices, "entries": res.Entries,
				})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Restored %s to %s: %s.\n", input, cfg.dbPath(), countsString(res.Stats))
			if res.Previous != "" {
				fmt.Fprintf(out, "The previous database is kept as %s.\n", res.Previous)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&input, "input", "i", "", "the backup file (required)")
	f.BoolVar(&force, "force", false, "replace an existing database")
	addJSONFlag(cmd)
	return cmd
}

func newCheckCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the database for damage and broken invariants",
		Long: `Check the database: bbolt's page consistency check, then feedmq's own
rules (every feed belongs to a channel, entry IDs are in range and entries
decode, grants name existing channels, the username index matches the
devices). While serve runs, the server checks its live database in a read
transaction; otherwise the file is opened read-only.

With storage set to PostgreSQL, check reads one snapshot of the database:
the schema version, entry IDs within each channel's last entry_id, entries
with values, channel settings, devices, access rules, bindings and the
account, and rows whose channel or device is missing.

Prints "ok" and what the database holds, or the problems found and exits
with status 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rep *storage.CheckReport
			err := withAdminOptions(cmd, backupAndCheck, noDBAdvice, func(ctx context.Context, a admin.Service) (err error) {
				rep, err = a.Check(ctx)
				return err
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON(cmd) {
				if err := writeJSON(out, rep); err != nil {
					return err
				}
			} else if len(rep.Problems) == 0 {
				fmt.Fprintf(out, "ok: %s\n", countsString(rep.Stats))
			} else {
				for _, p := range rep.Problems {
					fmt.Fprintln(out, p)
				}
				if rep.More > 0 {
					fmt.Fprintf(out, "... and %d more\n", rep.More)
				}
			}
			if n := len(rep.Problems) + rep.More; n > 0 {
				return fmt.Errorf("the database has %d problems; restore a backup (feedmq restore) or report them", n)
			}
			return nil
		},
	}
	addJSONFlag(cmd)
	return cmd
}

// countsString is e.g. "2 channels, 1 device, 350 entries".
func countsString(st storage.Stats) string {
	return fmt.Sprintf("%s, %s, %s", plural(uint64(st.Channels), "channel"), plural(uint64(st.Devices), "device"), plural(st.Entries, "entry"))
}

func plural(n uint64, noun string) string {
	switch {
	case n == 1:
		return "1 " + noun
	case noun == "entry":
		return fmt.Sprintf("%d entries", n)
	default:
		return fmt.Sprintf("%d %ss", n, noun)
	}
}

// pruneInterval is how often serve applies channel retention.
var pruneInterval = time.Minute

// startPruner applies channel retention (storage.DB.Prune) at once and then
// every interval, in the background, until stop is called; stop waits for
// a prune in progress to end, which it does after its current batch.
func startPruner(db interface {
	Prune(ctx context.Context, now time.Time) (int, error)
}, log *slog.Logger, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			start := time.Now()
			n, err := db.Prune(ctx, start)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Error("retention: pruning failed", "deleted", n, "error", err)
			case n > 0:
				log.Info("retention: deleted old entries", "deleted", n, "duration", time.Since(start))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}
