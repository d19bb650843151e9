package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// newRootCommand builds the feedmq command tree.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "feedmq",
		Short: "MQTT broker with ThingSpeak-style channel feeds",
		Long: `feedmq is an MQTT broker that stores what devices publish as channel feeds,
like ThingSpeak. Start it with "feedmq serve"; manage channels and devices with
the other commands, which work whether or not serve is running on --data.`,
		SilenceErrors: true, // main prints "feedmq: <error>"
		SilenceUsage:  true,
	}
	def := DefaultConfig()
	pf := root.PersistentFlags()
	pf.String("data", "", "instance directory holding the database and admin socket\n(default $STATE_DIRECTORY when set, else ./feedmq-data)")
	pf.String("config", "", "YAML configuration file (see configs/feedmq.yaml)")
	pf.String("log-level", def.LogLevel, "log level: debug, info, warn or error")
	pf.String("log-format", def.LogFormat, "log format: text or json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w; see `%s --help`", err, c.CommandPath())
	})
	root.AddCommand(newServeCommand(), newChannelCommand(), newDeviceCommand(), newAccessCommand(), newFeedCommand(),
		newBackupCommand(), newRestoreCommand(), newCheckCommand(),
		newAccountCommand(), newConfigCommand(), newVersionCommand(), newManCommand(), newBenchCommand(), newDBCommand())
	return root
}

// loadConfig builds the configuration of a command run: defaults, then the
// --config file, then the flags the user set, then validation.
func loadConfig(cmd *cobra.Command) (Config, error) {
	cfg := DefaultConfig()
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		if err := ReadConfigFile(path, &cfg); err != nil {
			return cfg, err
		}
	}
	if err := applyFlags(cmd.Flags(), &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid configuration: %w", err)
	}
	return cfg, nil
}

// newLogger returns a structured logger writing to w in the configured
// format and level. Under systemd the text format leaves out the time,
// which the journal records itself.
func newLogger(cfg Config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel) // validated
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	if underSystemd() {
		opts.ReplaceAttr = dropTime
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// dropTime removes a record's time from text log lines.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
		return slog.Attr{}
	}
	return a
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil || strings.ContainsAny(s, "+-") {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

// newGroupCommand returns a command that only holds subcommands: alone it
// prints its help, and an unknown subcommand is an error.
func newGroupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q; see `%s --help`", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}
