package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

const channelListHint = "feedmq channel list"

func newChannelCommand() *cobra.Command {
	cmd := newGroupCommand("channel", "Create and manage channels (feeds of up to eight fields)")
	cmd.AddCommand(
		newChannelCreateCommand(), newChannelListCommand(), newChannelShowCommand(),
		newChannelUpdateCommand(), newChannelRegenerateKeyCommand(),
		newChannelDeleteCommand(), newChannelClearCommand(),
		newChannelBindCommand(), newChannelUnbindCommand(), newChannelBindingsCommand(),
	)
	return cmd
}

// printChannelResult prints a channel as JSON or as a human table.
func printChannelResult(cmd *cobra.Command, c *channels.Channel) error {
	if asJSON(cmd) {
		return writeJSON(cmd.OutOrStdout(), newChannelJSON(c))
	}
	return printChannel(cmd.OutOrStdout(), c)
}

// addJSONFlag adds --json; asJSON reads it.
func addJSONFlag(cmd *cobra.Command) {
	cmd.Flags().Bool("json", false, "print JSON instead of a table")
}

func asJSON(cmd *cobra.Command) bool {
	b, _ := cmd.Flags().GetBool("json")
	return b
}

type channelCreateOptions struct {
	name, description string
	fields            []string
	public            bool
	maxEntries        uint64
	maxAge            string
	rateLimit         time.Duration
	settings          channelSettings
}

// channelSettings are the location, metadata, tags and URL flags that
// create and update share.
type channelSettings struct {
	latitude, longitude, elevation, metadata, tags, url string
}

// settingsUsage lists the settings flags for a command's Use line.
const settingsUsage = "[--latitude DEG] [--longitude DEG] [--elevation M] [--metadata TEXT] [--tags A,B] [--url URL]"

func addSettingsFlags(cmd *cobra.Command, o *channelSettings) {
	f := cmd.Flags()
	f.StringVar(&o.latitude, "latitude", "", "latitude of the channel, a decimal from -90 to 90")
	f.StringVar(&o.longitude, "longitude", "", "longitude of the channel, a decimal from -180 to 180")
	f.StringVar(&o.elevation, "elevation", "", "elevation of the channel in metres")
	f.StringVar(&o.metadata, "metadata", "", "free text for scripts (JSON, XML, ...), at most 4096 bytes")
	f.StringVar(&o.tags, "tags", "", "comma-separated tags, e.g. \"weather, roof\"")
	f.StringVar(&o.url, "url", "", "web page about the channel (http or https)")
}

func newChannelCreateCommand() *cobra.Command {
	var o channelCreateOptions
	cmd := &cobra.Command{
		Use:   "create --name NAME [--description TEXT] [--field N=LABEL]... [--public] [--max-entries N] [--max-age DURATION] [--rate-limit DURATION] " + settingsUsage,
		Short: "Create a channel with fresh write and read API keys",
		Long: `Create a channel. Without --field, all eight fields are enabled and labelled
"Field 1".."Field 8"; with --field, only the given fields are enabled.

--max-entries and --max-age set the channel's retention: serve deletes, once
a minute, the oldest entries beyond the newest N and those older than the
duration (e.g. 90m, 72h, 30d). Entry IDs are never reused.

--latitude, --longitude, --elevation, --metadata, --tags and --url are the
channel settings ThingSpeak's channel API has; feedmq only stores them.`,
		Example: `  feedmq channel create --name "Weather station" --field 1=Temperature --field 2=Humidity
  feedmq channel create --name Roof --latitude 52.5163 --longitude 13.3777 --tags "weather, roof"`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{mayCreate: "yes"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec, err := o.spec()
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				c, err := a.CreateChannel(ctx, spec)
				if err != nil {
					return err
				}
				return printChannelResult(cmd, c)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "channel name (required)")
	f.StringVar(&o.description, "description", "", "channel description")
	f.StringArrayVar(&o.fields, "field", nil, "enable field N with LABEL (repeatable; N from 1 to 8)")
	f.BoolVar(&o.public, "public", false, "anyone may subscribe without the read API key")
	addRetentionFlags(cmd, &o.maxEntries, &o.maxAge)
	addRateLimitFlag(cmd, &o.rateLimit)
	addSettingsFlags(cmd, &o.settings)
	addJSONFlag(cmd)
	return cmd
}

func (o *channelCreateOptions) spec() (auth.ChannelSpec, error) {
	if o.name == "" {
		return auth.ChannelSpec{}, errors.New(`--name is required, e.g. feedmq channel create --name "Weather station"`)
	}
	fields, err := parseFields(o.fields, false)
	if err != nil {
		return auth.ChannelSpec{}, err
	}
	maxAge, err := parseMaxAge(o.maxAge)
	if err != nil {
		return auth.ChannelSpec{}, err
	}
	if o.rateLimit < 0 {
		return auth.ChannelSpec{}, errors.New("--rate-limit must not be negative")
	}
	st := o.settings
	spec := auth.ChannelSpec{Name: o.name, Description: o.description, Public: o.public,
		MaxEntries: o.maxEntries, MaxAge: maxAge, RateLimit: o.rateLimit,
		Latitude: st.latitude, Longitude: st.longitude, Elevation: st.elevation,
		Metadata: st.metadata, Tags: channels.ParseTags(st.tags), URL: st.url}
	for n, label := range fields {
		spec.Fields[n-1] = label
	}
	return spec, nil
}

func newChannelListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List channels",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				list, err := a.ListChannels(ctx)
				if err != nil {
					return err
				}
				if asJSON(cmd) {
					out := make([]channelJSON, len(list))
					for i, c := range list {
						out[i] = newChannelJSON(c)
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return printChannelList(cmd.OutOrStdout(), list)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

// channelIDCommand builds a command that takes one channel ID and runs f.
func channelIDCommand(use, short string, f func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  oneID("channel"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("channel", args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				return withHint(f(cmd, ctx, a, id), channelListHint)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newChannelShowCommand() *cobra.Command {
	return channelIDCommand("show ID", "Show a channel with its API keys",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			c, err := a.Channel(ctx, id)
			if err != nil {
				return err
			}
			return printChannelResult(cmd, c)
		})
}

func newChannelDeleteCommand() *cobra.Command {
	return channelIDCommand("delete ID", "Delete a channel, its feed, its bindings and every device's access to it",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			if err := a.DeleteChannel(ctx, id); err != nil {
				return err
			}
			return printDone(cmd, id, "deleted", fmt.Sprintf("Channel %d deleted.", id))
		})
}

func newChannelClearCommand() *cobra.Command {
	return channelIDCommand("clear ID", "Delete every entry of a channel; entry IDs restart at 1",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			if err := a.ClearChannel(ctx, id); err != nil {
				return err
			}
			return printDone(cmd, id, "cleared", fmt.Sprintf("Channel %d cleared; entry IDs restart at 1.", id))
		})
}

// printDone reports a change that returns nothing: {"id":N,"<what>":true}
// with --json, else a sentence.
func printDone(cmd *cobra.Command, id uint64, what, sentence string) error {
	if asJSON(cmd) {
		return writeJSON(cmd.OutOrStdout(), map[string]any{"id": id, what: true})
	}
	_, err := fmt.Fprintln(cmd.OutOrStdout(), sentence)
	return err
}

type channelUpdateOptions struct {
	name, description string
	fields            []string
	public            bool
	maxEntries        uint64
	maxAge            string
	maxAgeValue       time.Duration
	rateLimit         time.Duration
	settings          channelSettings
	tags              []string
}

func newChannelUpdateCommand() *cobra.Command {
	var (
		o channelUpdateOptions
		u auth.ChannelUpdate
	)
	cmd := channelIDCommand("update ID [--name NAME] [--description TEXT] [--field N=LABEL]... [--public=true|false] [--max-entries N] [--max-age DURATION] [--rate-limit DURATION] "+settingsUsage,
		"Change a channel's settings",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			c, err := a.UpdateChannel(ctx, id, u)
			if err != nil {
				return err
			}
			return printChannelResult(cmd, c)
		})
	cmd.Long = `Change a channel's settings; only the flags given change. --field N=LABEL
enables or relabels field N; --field N= disables it. --max-entries 0 and
--max-age 0 remove a retention limit. --latitude "", --tags "" and the like
unset a setting; --tags replaces every tag.`
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) (err error) {
		u, err = o.update(cmd)
		return err
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "new channel name")
	f.StringVar(&o.description, "description", "", "new description")
	f.StringArrayVar(&o.fields, "field", nil, "set the label of field N; N= disables it (repeatable)")
	f.BoolVar(&o.public, "public", false, "make the channel public (true) or private (false)")
	addRetentionFlags(cmd, &o.maxEntries, &o.maxAge)
	addRateLimitFlag(cmd, &o.rateLimit)
	addSettingsFlags(cmd, &o.settings)
	return cmd
}

func (o *channelUpdateOptions) update(cmd *cobra.Command) (auth.ChannelUpdate, error) {
	var u auth.ChannelUpdate
	f := cmd.Flags()
	if f.Changed("name") {
		u.Name = &o.name
	}
	if f.Changed("description") {
		u.Description = &o.description
	}
	if f.Changed("public") {
		u.Public = &o.public
	}
	fields, err := parseFields(o.fields, true)
	if err != nil {
		return u, err
	}
	if len(fields) > 0 {
		u.Fields = fields
	}
	if f.Changed("max-entries") {
		u.MaxEntries = &o.maxEntries
	}
	if f.Changed("max-age") {
		if o.maxAgeValue, err = parseMaxAge(o.maxAge); err != nil {
			return u, err
		}
		u.MaxAge = &o.maxAgeValue
	}
	if f.Changed("rate-limit") {
		if o.rateLimit < 0 {
			return u, errors.New("--rate-limit must not be negative")
		}
		u.RateLimit = &o.rateLimit
	}
	changed := u.Name != nil || u.Description != nil || u.Public != nil || u.Fields != nil || u.MaxEntries != nil || u.MaxAge != nil || u.RateLimit != nil
	st := &o.settings
	for _, s := range []struct {
		flag string
		dst  **string
		v    *string
	}{
		{"latitude", &u.Latitude, &st.latitude}, {"longitude", &u.Longitude, &st.longitude},
		{"elevation", &u.Elevation, &st.elevation}, {"metadata", &u.Metadata, &st.metadata}, {"url", &u.URL, &st.url},
	} {
		if f.Changed(s.flag) {
			*s.dst, changed = s.v, true
		}
	}
	if f.Changed("tags") {
		// Never nil: a nil list would mean "leave the tags" once encoded
		// for the admin socket.
		o.tags = append([]string{}, channels.ParseTags(st.tags)...)
		u.Tags, changed = &o.tags, true
	}
	if !changed {
		return u, errors.New("nothing to update; give --name, --description, --field, --public, --max-entries, --max-age, --rate-limit, --latitude, --longitude, --elevation, --metadata, --tags or --url")
	}
	return u, nil
}

func newChannelRegenerateKeyCommand() *cobra.Command {
	var write, read bool
	cmd := channelIDCommand("regenerate-key ID --write | --read",
		"Replace a channel's write or read API key; the old key stops working at once",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			c, err := a.RegenerateKey(ctx, id, write)
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), newChannelJSON(c))
			}
			kind, key := "read", c.ReadKey
			if write {
				kind, key = "write", c.WriteKey
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "New %s API key of channel %d: %s\n", kind, id, key)
			return err
		})
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if write == read {
			return errors.New("give exactly one of --write and --read")
		}
		return nil
	}
	cmd.Flags().BoolVar(&write, "write", false, "replace the write API key")
	cmd.Flags().BoolVar(&read, "read", false, "replace the read API key")
	return cmd
}

// addRateLimitFlag adds --rate-limit.
func addRateLimitFlag(cmd *cobra.Command, d *time.Duration) {
	cmd.Flags().DurationVar(d, "rate-limit", 0, "minimum interval between two entries of this channel, e.g. 15s (0: the server's rate_limit)")
}

// addRetentionFlags adds --max-entries and --max-age.
func addRetentionFlags(cmd *cobra.Command, maxEntries *uint64, maxAge *string) {
	f := cmd.Flags()
	f.Uint64Var(maxEntries, "max-entries", 0, "keep only the newest N entries (0: no limit)")
	f.StringVar(maxAge, "max-age", "", "delete entries older than this, e.g. 72h or 30d (0: no limit)")
}

// parseMaxAge parses a --max-age: a Go duration, or a whole number of days
// such as 30d. Empty means none.
func parseMaxAge(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 32); err == nil {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid --max-age %q: give a duration such as 90m, 72h or 30d, or 0 for no limit", s)
	}
	return d, nil
}
