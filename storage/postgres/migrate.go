package postgres

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A migration moves the schema from version Version-1 to Version. Each
// area of the schema registers its migrations from an init function in
// its own file (schema_*.go); versions are global, 1, 2, 3, ... in the
// order they must run, and a version once released never changes: a
// later change is a new migration.
type migration struct {
	Version int
	Name    string // what it does, kept in schema_migrations
	SQL     string // one or more statements
}

// migrations holds every registered migration, in version order once
// init has run (register keeps it sorted).
var migrations []migration

// register adds m; it panics on a duplicate version, which two files
// claiming one number would cause (TestMigrationsNumbered catches it).
func register(m migration) {
	for _, o := range migrations {
		if o.Version == m.Version {
			panic(fmt.Sprintf("postgres: migrations %q and %q both claim version %d", o.Name, m.Name, m.Version))
		}
	}
	migrations = append(migrations, m)
	slices.SortFunc(migrations, func(a, b migration) int { return a.Version - b.Version })
}

// schemaLock is the key of the advisory lock that serialises migrations
// between processes opening the database at the same time.
const schemaLock = 0x66656564_6d710001 // "feedmq" 1

// migrate runs the migrations of list the database has not run yet, all
// in one transaction, or none. It refuses a database that a newer feedmq
// migrated, and a non-empty schema that is not feedmq's.
func migrate(ctx context.Context, pool *pgxpool.Pool, list []migration) error {
	for i, m := range list {
		if m.Version != i+1 {
			return fmt.Errorf("internal error: migration %q has version %d, want %d", m.Name, m.Version, i+1)
		}
	}
	latest := len(list)
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		current := 0
		if exists {
			if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
				return fmt.Errorf("read schema version: %w", err)
			}
		} else {
			var tables int
			err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").Scan(&tables)
			if err != nil {
				return fmt.Errorf("read schema: %w", err)
			}
			if tables > 0 {
				return fmt.Errorf("the database holds %d tables but no feedmq schema; give feedmq a database of its own", tables)
			}
			_, err = tx.Exec(ctx, `CREATE TABLE schema_migrations (
				version    integer PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`)
			if err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
		}
		if current > latest {
			return fmt.Errorf("the database schema is version %d, newer than this feedmq supports (%d); upgrade feedmq", current, latest)
		}
		for _, m := range list[current:] {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		return nil
	})
}
