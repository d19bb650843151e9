package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/feedmq/feedmq/storage/postgres"
)

// maxPasswordFile bounds storage_password_file: a password, not a file
// read whole by mistake.
const maxPasswordFile = 4096

// validateStorage checks storage and storage_password_file and reads the
// password. No message repeats the URL or the password: either may hold
// the secret.
func (c *Config) validateStorage() error {
	c.storagePassword = ""
	if c.Storage == "" {
		if c.StoragePasswordFile != "" {
			return errors.New("storage_password_file: is set but storage is not; set storage to a postgres:// URL, or remove storage_password_file")
		}
		return nil
	}
	if !isPostgresURL(c.Storage) {
		return errors.New(`storage: is not a postgres:// or postgresql:// URL; leave it empty ("") for the database file in data_dir`)
	}
	u, err := url.Parse(c.Storage)
	if err != nil {
		// url's message quotes the URL's pieces, which may be the
		// password's.
		return errors.New("storage: the URL does not parse; percent-encode special characters of the user name and password, " +
			"and with several hosts give each its port (postgres://feedmq@db1:5432,db2:5432/feedmq)")
	}
	// pgconn reads these files as it parses the URL.
	for _, k := range []string{"sslrootcert", "sslcert", "sslkey", "passfile"} {
		f := u.Query().Get(k)
		if f == "" {
			f = os.Getenv("PG" + strings.ToUpper(k))
		}
		if f == "" {
			continue
		}
		if err := notSpecialFile(f); err != nil {
			return fmt.Errorf("storage: %s: %w", k, err)
		}
	}
	if _, err := pgconn.ParseConfig(c.Storage); err != nil {
		pw, _ := u.User.Password()
		return fmt.Errorf("storage: the PostgreSQL URL is not usable: %s", pgParseProblem(err, pw))
	}
	if c.StoragePasswordFile == "" {
		return nil
	}
	if _, set := u.User.Password(); set || u.Query().Has("password") {
		return errors.New("storage_password_file: the storage URL holds a password too; keep it in one place (the file)")
	}
	pw, err := readPasswordFile(c.StoragePasswordFile)
	if err != nil {
		return fmt.Errorf("storage_password_file: %w", err)
	}
	c.storagePassword = pw
	return nil
}

// pgParseProblem is what is wrong with a connection string, without the
// string: pgconn's messages quote it, password included. The cause it
// wraps (a bad port number, an unreadable certificate file) is kept when
// it quotes neither the URL nor the password.
func pgParseProblem(err error, password string) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) && pe.Unwrap() != nil {
		msg := pe.Unwrap().Error()
		if !strings.Contains(msg, "://") && (password == "" || !strings.Contains(msg, password)) && len(msg) < 300 {
			return msg
		}
	}
	return "check the host, port and parameters"
}

// readPasswordFile reads a database password from path: the first line,
// without its line end. The file must be a regular file that other
// users cannot read or write (its group may read it, as a service's
// group often must).
func readPasswordFile(path string) (string, error) {
	// Looked at before it is opened: opening a FIFO would wait for a
	// writer, and serve with it.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("%s is open to other users (mode %#o); chmod o-rwx %s", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", fmt.Errorf("cannot read the password file: %w", err)
	}
	if len(b) > maxPasswordFile {
		return "", fmt.Errorf("%s is longer than %d bytes; it should hold only the password", path, maxPasswordFile)
	}
	return parsePassword(path, b)
}

// parsePassword is the password a password file at path holds: its only
// line, without the line end (LF or CRLF).
func parsePassword(path string, b []byte) (string, error) {
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	line = bytes.TrimRight(line, "\r")
	switch {
	case len(line) == 0:
		return "", fmt.Errorf("%s is empty; write the password on its first line", path)
	case len(bytes.TrimSpace(rest)) > 0:
		return "", fmt.Errorf("%s has more than one line; it should hold only the password", path)
	case bytes.IndexByte(line, 0) >= 0:
		return "", fmt.Errorf("%s holds a NUL byte", path)
	}
	return string(line), nil
}

// usesPostgres reports whether the instance keeps its state in PostgreSQL.
func (c *Config) usesPostgres() bool { return c.Storage != "" }

// storageName is the database for messages: the URL without password
// and parameters, or the bbolt file.
func (c *Config) storageName() string {
	if c.usesPostgres() {
		return redactURL(c.Storage)
	}
	return c.dbPath()
}

// openPostgres opens the PostgreSQL store of c with serve's options.
func (c *Config) openPostgres(ctx context.Context, o postgres.Options) (*postgres.DB, error) {
	o.Password = c.storagePassword
	return postgres.Open(ctx, c.Storage, o)
}
