package main

import (
	"crypto/tls"
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCommand() *cobra.Command {
	cmd := newGroupCommand("config", "Check configuration files")
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Validate a configuration file without starting the broker",
		Long: `Validate a configuration file as "feedmq serve --config FILE" would, without
starting anything: unknown keys, values of the wrong type, bad values and, when
tls.cert and tls.key are set, a certificate and key that do not load or match.
It prints "FILE: ok" and exits 0, or prints the error, which names the key, and
exits 1. Check before "systemctl reload feedmq" or "systemctl restart feedmq".`,
		Example: "  feedmq config check /etc/feedmq/feedmq.yaml && systemctl reload feedmq",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s takes one configuration file, e.g. `%s /etc/feedmq/feedmq.yaml`", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkConfigFile(args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return err
		},
	})
	return cmd
}

// checkConfigFile validates the file at path over the defaults, as serve
// reads it, flags aside. Errors name the file and the key.
func checkConfigFile(path string) error {
	cfg := DefaultConfig()
	if err := ReadConfigFile(path, &cfg); err != nil {
		return err // names the file, the line and the key
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if cfg.TLS.Cert != "" {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key); err != nil {
			return fmt.Errorf("config %s: tls.cert, tls.key: %w", path, err)
		}
	}
	return nil
}
