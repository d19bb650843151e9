package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
)

func newAccountCommand() *cobra.Command {
	cmd := newGroupCommand("account", "Show the owner's user API key and set the web console password")
	cmd.Long = `The instance has one owner. The user API key (16 characters A-Z0-9, as
ThingSpeak's) manages channels and devices over HTTP; the console password
signs in to the web console. The key is made the first time it is needed.

Until a password is set, serve logs a one-time setup link for the console:
open it to choose the password in a browser, or set it here.`
	cmd.AddCommand(newAccountShowCommand(), newAccountRegenerateKeyCommand(), newAccountSetPasswordCommand())
	return cmd
}

const accountNoDB = "give the --data directory of your instance, or start one with feedmq serve"

// withAccount is withAdmin for the account commands, which start a new
// database only when create is set.
func withAccount(cmd *cobra.Command, create bool, f func(ctx context.Context, a admin.Service) error) error {
	return withAdminOptions(cmd, admin.Options{Create: create}, accountNoDB, f)
}

// accountJSON is the --json shape of the account: never the password or
// its hash.
type accountJSON struct {
	UserAPIKey        string  `json:"user_api_key"`
	PasswordSet       bool    `json:"password_set"`
	PasswordChangedAt *string `json:"password_changed_at"` // null while no password is set
}

func printAccount(cmd *cobra.Command, info *auth.AccountInfo) error {
	var changed *string
	if info.PasswordChangedAt != nil {
		s := formatJSONTime(*info.PasswordChangedAt)
		changed = &s
	}
	if asJSON(cmd) {
		return writeJSON(cmd.OutOrStdout(), accountJSON{UserAPIKey: info.UserAPIKey, PasswordSet: info.PasswordSet, PasswordChangedAt: changed})
	}
	t := newTable(cmd.OutOrStdout())
	t.row("User API key:", info.UserAPIKey)
	if info.PasswordSet {
		t.row("Console password:", "set on "+formatTime(*info.PasswordChangedAt))
	} else {
		t.row("Console password:", "not set (feedmq account set-password, or the setup link serve logs)")
	}
	return t.flush()
}

func newAccountShowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show the user API key and whether a console password is set",
		Example: `  feedmq account show
  feedmq account show --json | jq -r .user_api_key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAccount(cmd, false, func(ctx context.Context, a admin.Service) error {
				info, err := a.Account(ctx)
				if err != nil {
					return err
				}
				return printAccount(cmd, info)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newAccountRegenerateKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "regenerate-key",
		Short: "Replace the user API key; the old one stops working at once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAccount(cmd, false, func(ctx context.Context, a admin.Service) error {
				info, err := a.RegenerateUserKey(ctx)
				if err != nil {
					return err
				}
				return printAccount(cmd, info)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newAccountSetPasswordCommand() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "set-password [--password-stdin]",
		Short: "Set the web console password; every console session ends",
		Long: fmt.Sprintf(`Set the owner's password for the web console. On a terminal it is asked
for twice, without echo; --password-stdin reads it from the first line of
standard input instead, for scripts. It must have at least %d characters
and at most %d bytes of UTF-8 text. Every console session signed in before
ends.`, auth.OwnerPasswordMinRunes, auth.OwnerPasswordMaxBytes),
		Example: `  feedmq account set-password
  printf '%s\n' "$CONSOLE_PASSWORD" | feedmq account set-password --password-stdin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			password, err := readNewPassword(cmd, fromStdin)
			if err != nil {
				return err
			}
			// Checked before the database is opened, so that a bad one
			// changes nothing, not even create a data directory.
			if err := auth.CheckOwnerPassword(password); err != nil {
				return err
			}
			return withAccount(cmd, true, func(ctx context.Context, a admin.Service) error {
				if err := a.SetPassword(ctx, password); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Console password set; console sessions signed in before have ended.")
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "password-stdin", false, "read the password from the first line of standard input")
	return cmd
}

// readNewPassword reads the new password from stdin's first line, or asks
// for it twice on the terminal.
func readNewPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	in := cmd.InOrStdin()
	if fromStdin {
		return readPasswordLine(in)
	}
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("standard input is not a terminal, so the password cannot be asked for; " +
			"use --password-stdin to read it from standard input, e.g. printf '%s\\n' \"$PASSWORD\" | feedmq account set-password --password-stdin")
	}
	fd := int(f.Fd())
	errOut := cmd.ErrOrStderr()
	fmt.Fprint(errOut, "New console password: ")
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if err := auth.CheckOwnerPassword(string(first)); err != nil {
		return "", err
	}
	fmt.Fprint(errOut, "Repeat it: ")
	second, err := term.ReadPassword(fd)
	fmt.Fprintln(errOut)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if !bytes.Equal(first, second) {
		return "", errors.New("the two passwords differ; nothing changed")
	}
	return string(first), nil
}

// readPasswordLine reads the first line of r without its line ending
// ("\n" or "\r\n"), reading no more than a valid password can take.
func readPasswordLine(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, auth.OwnerPasswordMaxBytes+2))
	line, err := br.ReadBytes('\n')
	switch {
	case err == io.EOF && len(line) > auth.OwnerPasswordMaxBytes+1:
		return "", fmt.Errorf("password is too long: at most %d bytes", auth.OwnerPasswordMaxBytes)
	case err == io.EOF && len(line) == 0:
		return "", errors.New("--password-stdin: standard input is empty; give the password on its first line")
	case err != nil && err != io.EOF:
		return "", fmt.Errorf("read standard input: %w", err)
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return string(line), nil
}
