package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/channels"
)

// Access rules govern the free topics (every topic outside channels/,
// devices/ and $): a device's own, the anonymous connections' and
// everyone's. The device commands name a list by device ID or by the
// words anonymous and everyone, which no device ID can be.

const ruleTargetHelp = `ID is a device ID, "anonymous" (connections without a username) or
"everyone" (every connection, anonymous or not, besides its own rules; write
%c for the client ID and %u for the username, as in Mosquitto's pattern
lines).`

// parseRuleTarget parses a device command's ID argument.
func parseRuleTarget(s string) (auth.RuleTarget, error) {
	switch s {
	case string(auth.ScopeAnonymous):
		return auth.RuleTarget{Scope: auth.ScopeAnonymous}, nil
	case string(auth.ScopeEveryone):
		return auth.RuleTarget{Scope: auth.ScopeEveryone}, nil
	}
	id, err := channels.ParseID(s)
	if err != nil {
		return auth.RuleTarget{}, fmt.Errorf("invalid device ID %q: give a device ID (see `feedmq device list`), anonymous or everyone", s)
	}
	return auth.DeviceRules(id), nil
}

// ruleTargetCommand builds a command taking one rule list and running f.
func ruleTargetCommand(use, short string, f func(cmd *cobra.Command, ctx context.Context, a admin.Service, t auth.RuleTarget) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s takes one device ID, anonymous or everyone, e.g. `%s 1 --topic 'home/#'`", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := parseRuleTarget(args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				return deviceHint(f(cmd, ctx, a, t))
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newDeviceAllowCommand() *cobra.Command {
	var (
		topics            []string
		read, write, deny bool
		access            auth.Access
	)
	cmd := ruleTargetCommand("allow ID|anonymous|everyone --topic PATTERN... (--read and/or --write | --deny)",
		"Let a device (or anonymous connections, or everyone) read or write free topics",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, t auth.RuleTarget) error {
			rules := make([]auth.Rule, len(topics))
			for i, p := range topics {
				rules[i] = auth.Rule{Access: access, Pattern: p}
			}
			got, err := a.AllowRules(ctx, t, rules)
			if err != nil {
				return err
			}
			return printRuleList(cmd, t, got)
		})
	cmd.Long = `Add access rules on free topics: every topic outside channels/, devices/ and
$SYS, which feedmq serves as a plain MQTT broker. A connection may use a free
topic only when a rule allows it (default deny), and a deny rule matching the
topic refuses it whatever else allows it. --topic is an MQTT filter: + matches
one level, # the rest, and a level that is %c or %u stands for the
connection's client ID or username.

A list holds one rule per pattern: allowing a pattern it has already replaces
that rule's access (so --read alone turns a readwrite rule read-only).
Changes apply at once, to live connections too.

` + ruleTargetHelp
	cmd.Example = `  feedmq device allow 3 --topic 'homeassistant/#' --read --write
  feedmq device allow 3 --topic 'zigbee2mqtt/bridge/#' --deny
  feedmq device allow anonymous --topic 'public/#' --read
  feedmq device allow everyone --topic 'tele/%c/#' --write`
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if len(topics) == 0 {
			return errors.New("give at least one --topic, e.g. --topic 'home/#'")
		}
		switch {
		case deny && (read || write):
			return errors.New("--deny cannot go with --read or --write: a deny rule refuses both")
		case deny:
			access = auth.AccessDeny
		case read && write:
			access = auth.AccessReadWrite
		case read:
			access = auth.AccessRead
		case write:
			access = auth.AccessWrite
		default:
			return errors.New("give --read, --write (both for readwrite) or --deny")
		}
		for _, p := range topics {
			if err := auth.ValidPattern(p); err != nil {
				return fmt.Errorf("invalid --topic: %w", err)
			}
		}
		return nil
	}
	f := cmd.Flags()
	f.StringArrayVar(&topics, "topic", nil, "topic pattern, with + and # wildcards and %c or %u levels (repeatable)")
	f.BoolVar(&read, "read", false, "allow subscribing and receiving")
	f.BoolVar(&write, "write", false, "allow publishing (and wills)")
	f.BoolVar(&deny, "deny", false, "refuse the topics, whatever other rules allow")
	return cmd
}

func newDeviceDisallowCommand() *cobra.Command {
	var topics []string
	cmd := ruleTargetCommand("disallow ID|anonymous|everyone --topic PATTERN...",
		"Remove access rules on free topics, by pattern",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, t auth.RuleTarget) error {
			got, err := a.DisallowRules(ctx, t, topics)
			if errors.Is(err, auth.ErrNoRule) {
				return withHint(err, "feedmq access list")
			}
			if err != nil {
				return err
			}
			return printRuleList(cmd, t, got)
		})
	cmd.Long = `Remove the rules on the given patterns, written exactly as they were allowed.
Nothing changes when one of them has no rule. Live connections lose the access
at once.

` + ruleTargetHelp
	cmd.Example = `  feedmq device disallow 3 --topic 'homeassistant/#'`
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if len(topics) == 0 {
			return errors.New("give the --topic to remove, e.g. --topic 'home/#'")
		}
		return nil
	}
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "topic pattern of the rule to remove (repeatable)")
	return cmd
}

// ruleListJSON is the --json shape of one list of rules.
type ruleListJSON struct {
	List   auth.RuleScope `json:"list"`
	Device uint64         `json:"device,omitempty"`
	Rules  []string       `json:"rules"`
}

// printRuleList prints the list of t after a change.
func printRuleList(cmd *cobra.Command, t auth.RuleTarget, rules []auth.Rule) error {
	if asJSON(cmd) {
		return writeJSON(cmd.OutOrStdout(), ruleListJSON{List: t.Scope, Device: t.Device, Rules: auth.RuleStrings(rules)})
	}
	w := cmd.OutOrStdout()
	if len(rules) == 0 {
		_, err := fmt.Fprintf(w, "Access rules of %s: none.\n", t)
		return err
	}
	fmt.Fprintf(w, "Access rules of %s:\n", t)
	tb := newTable(w)
	for _, r := range rules {
		tb.row("  "+r.Access.String(), r.Pattern)
	}
	return tb.flush()
}

func newAccessCommand() *cobra.Command {
	cmd := newGroupCommand("access", "List access rules on free topics, or import them from Mosquitto")
	cmd.AddCommand(newAccessListCommand(), newAccessImportCommand())
	return cmd
}

func newAccessListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every access rule: anonymous, everyone's and each device's",
		Long: `List the access rules on free topics: those of anonymous connections, those
of everyone (which apply to every connection besides its own), and each
device's. Change them with feedmq device allow and disallow.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				rules, err := a.AccessRules(ctx)
				if err != nil {
					return err
				}
				if asJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), rules.JSON())
				}
				return printAccessRules(cmd.OutOrStdout(), rules)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func printAccessRules(w io.Writer, a *auth.AccessRules) error {
	if len(a.Anonymous) == 0 && len(a.Everyone) == 0 && len(a.Devices) == 0 {
		_, err := fmt.Fprintln(w, "No access rules: every free topic is refused. Add one with `feedmq device allow`.")
		return err
	}
	t := newTable(w)
	t.row("LIST", "ACCESS", "PATTERN")
	rows := func(list string, rules []auth.Rule) {
		if len(rules) == 0 {
			t.row(list, "-", "-")
		}
		for _, r := range rules {
			t.row(list, r.Access, r.Pattern)
		}
	}
	rows("anonymous", a.Anonymous)
	rows("everyone", a.Everyone)
	for _, d := range a.Devices {
		rows(fmt.Sprintf("device %d (%s)", d.ID, d.Name), d.Rules)
	}
	return t.flush()
}

func newAccessImportCommand() *cobra.Command {
	var opts admin.ACLImportOptions
	cmd := &cobra.Command{
		Use:   "import FILE [--dry-run] [--replace]",
		Short: "Import the access rules of a Mosquitto ACL file (acl_file)",
		Long: `Import a Mosquitto ACL file, so an existing set-up moves over: topic lines
before any user line become the anonymous connections' rules, those after
"user NAME" the rules of the device whose username, or else whose name, is
NAME, and pattern lines everyone's. Create the devices first (feedmq device
create --name NAME); a user that names no device fails the import, listing
every such user, and nothing is imported. Rules on channels/, devices/ or $
topics are refused with their line number. FILE "-" reads standard input.

By default the file's rules are added to the lists as feedmq device allow
adds them; --replace makes each list the file has rules for hold exactly
those. --dry-run shows the outcome and changes nothing.`,
		Example: `  feedmq access import /etc/mosquitto/acl --dry-run
  feedmq access import /etc/mosquitto/acl`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%s takes one file, e.g. `%s /etc/mosquitto/acl`", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			acl, err := readACL(cmd, args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				res, err := a.ImportACL(ctx, acl, opts)
				if err != nil {
					return err
				}
				return printACLImport(cmd, args[0], res)
			})
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "show what the import would do; change nothing")
	cmd.Flags().BoolVar(&opts.Replace, "replace", false, "replace each list the file has rules for instead of adding to it")
	addJSONFlag(cmd)
	return cmd
}

// readACL reads and parses the ACL file here, where the path means what
// the user meant: a running server may have another working directory.
func readACL(cmd *cobra.Command, path string) (*auth.ACL, error) {
	var r io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	acl, err := auth.ParseACL(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return acl, nil
}

// importListJSON is the --json shape of one list an import changes.
type importListJSON struct {
	ruleListJSON
	User       string `json:"user,omitempty"`
	DeviceName string `json:"device_name,omitempty"`
	FromFile   int    `json:"from_file"`
}

func printACLImport(cmd *cobra.Command, path string, res *admin.ACLImportResult) error {
	if asJSON(cmd) {
		out := struct {
			DryRun  bool             `json:"dry_run"`
			Replace bool             `json:"replace"`
			Lists   []importListJSON `json:"lists"`
		}{res.DryRun, res.Replace, []importListJSON{}}
		for _, l := range res.Lists {
			out.Lists = append(out.Lists, importListJSON{
				ruleListJSON: ruleListJSON{List: l.Target.Scope, Device: l.Target.Device, Rules: auth.RuleStrings(l.Rules)},
				User:         l.User, DeviceName: l.DeviceName, FromFile: l.FromFile,
			})
		}
		return writeJSON(cmd.OutOrStdout(), out)
	}
	w := cmd.OutOrStdout()
	if len(res.Lists) == 0 {
		_, err := fmt.Fprintf(w, "%s has no rules; nothing to import.\n", path)
		return err
	}
	if res.DryRun {
		fmt.Fprintf(w, "Dry run, nothing changed. Importing %s would give:\n", path)
	} else {
		fmt.Fprintf(w, "Imported %s:\n", path)
	}
	t := newTable(w)
	for _, l := range res.Lists {
		name := l.Target.String()
		if l.User != "" {
			name = fmt.Sprintf("%s (%s, user %q)", name, l.DeviceName, l.User)
		}
		t.row("  "+name, fmt.Sprintf("%d from the file, %d in all", l.FromFile, len(l.Rules)))
	}
	return t.flush()
}
