package main

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/auth"
)

// credentialOptions are the flags of the commands that reveal a password:
// device create and device reset-password.
type credentialOptions struct {
	format string
	output string
}

func (o *credentialOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.format, "format", "text", "credentials format: text, json, env or arduino (mqtt_secrets.h)")
	f.StringVarP(&o.output, "output", "o", "", "write the credentials to this new file (mode 0600) instead of stdout")
	if f.Lookup("json") == nil {
		addJSONFlag(cmd)
	}
}

// check validates the flags before anything changes.
func (o *credentialOptions) check(cmd *cobra.Command) error {
	if !slices.Contains(auth.CredentialFormats(), o.format) {
		return fmt.Errorf("invalid --format %q: want text, json, env or arduino", o.format)
	}
	if asJSON(cmd) && o.output == "" && cmd.Flags().Changed("format") && o.format != "json" {
		return fmt.Errorf("--json and --format %s would both go to stdout; add --output FILE for the credentials", o.format)
	}
	return nil
}

// openOutput creates the --output file before the password exists, so
// that a file that cannot be written never costs a password. It refuses
// to overwrite an existing file. It returns nil when there is no --output.
func (o *credentialOptions) openOutput() (*os.File, error) {
	if o.output == "" {
		return nil, nil
	}
	f, err := os.OpenFile(o.output, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%s already exists; remove it or choose another --output (it may hold credentials that still work)", o.output)
	}
	if err != nil {
		return nil, fmt.Errorf("create credentials file: %w", err)
	}
	return f, nil
}

// abandon removes an --output file created for a change that failed.
func abandon(f *os.File) {
	if f != nil {
		f.Close()
		os.Remove(f.Name())
	}
}

// emit shows new credentials: into the --output file (then a summary, or
// the device JSON with --json, on stdout), or else on stdout in --format
// (the device JSON with --json) with a reminder on stderr.
func (o *credentialOptions) emit(cmd *cobra.Command, f *os.File, c *auth.Credentials, action string) error {
	out := cmd.OutOrStdout()
	if f != nil {
		err := auth.WriteCredentials(f, o.format, c)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w; the password is lost, run `feedmq device reset-password %d`", f.Name(), err, c.Device.ID)
		}
		if asJSON(cmd) {
			return writeJSON(out, auth.NewDeviceJSON(c.Device, c.Password))
		}
		fmt.Fprintf(out, "Device %d %s; credentials written to %s (%s format).\n", c.Device.ID, action, f.Name(), o.format)
		return printDevice(out, c.Device, nil)
	}
	format := o.format
	if asJSON(cmd) {
		format = "json"
	}
	if err := auth.WriteCredentials(out, format, c); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Device %d %s. Keep the password now: it is shown only once.\n", c.Device.ID, action)
	return nil
}
