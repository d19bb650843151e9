package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
)

func newDeviceCommand() *cobra.Command {
	cmd := newGroupCommand("device", "Create and manage devices (MQTT credentials with rights on channels)")
	cmd.AddCommand(
		newDeviceCreateCommand(), newDeviceListCommand(), newDeviceShowCommand(),
		newDeviceUpdateCommand(), newDeviceAuthorizeCommand(), newDeviceDeauthorizeCommand(),
		newDeviceResetPasswordCommand(), newDeviceDeleteCommand(),
		newDeviceAllowCommand(), newDeviceDisallowCommand(),
	)
	return cmd
}

func printDeviceResult(cmd *cobra.Command, d *auth.Device) error {
	if asJSON(cmd) {
		return writeJSON(cmd.OutOrStdout(), auth.NewDeviceJSON(d, ""))
	}
	return printDevice(cmd.OutOrStdout(), d, nil)
}

const channelFlagUsage = "channel the device may use, as ID (publish and subscribe), ID:pub, ID:sub or ID:pubsub (repeatable)"

func newDeviceCreateCommand() *cobra.Command {
	var (
		name, description string
		chans             []string
		grants            []auth.Grant
		creds             credentialOptions
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--description TEXT] [--channel ID[:pub|:sub|:pubsub]]... [--format text|json|env|arduino] [--output FILE]",
		Short: "Create a device with generated MQTT credentials",
		Long: `Create a device: a client ID, username and password for MQTT, with rights on
channels. The password is shown only now; only a hash is stored.`,
		Example:     `  feedmq device create --name esp32-garden --channel 1 --format arduino --output mqtt_secrets.h`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{mayCreate: "yes"},
		PreRunE: func(cmd *cobra.Command, _ []string) (err error) {
			if name == "" {
				return errors.New(`--name is required, e.g. feedmq device create --name esp32-garden --channel 1`)
			}
			if grants, err = parseGrants(chans); err != nil {
				return err
			}
			return creds.check(cmd)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				f, err := creds.openOutput()
				if err != nil {
					return err
				}
				c, err := a.CreateDevice(ctx, auth.DeviceSpec{Name: name, Description: description, Grants: grants})
				if err != nil {
					abandon(f)
					return deviceHint(err)
				}
				return creds.emit(cmd, f, c, "created")
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "device name (required)")
	cmd.Flags().StringVar(&description, "description", "", "what the device is, where it is")
	cmd.Flags().StringArrayVar(&chans, "channel", nil, channelFlagUsage)
	creds.addFlags(cmd)
	return cmd
}

func newDeviceUpdateCommand() *cobra.Command {
	var (
		name, description string
		u                 auth.DeviceUpdate
	)
	cmd := deviceIDCommand("update ID [--name NAME] [--description TEXT]",
		"Rename a device or change its description (its credentials and rights stay)",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			d, err := a.UpdateDevice(ctx, id, u)
			if err != nil {
				return err
			}
			return printDeviceResult(cmd, d)
		})
	cmd.Long = `Change a device's name or description; only the flags given change, and
--description "" removes the description. Rights on channels change with
feedmq device authorize and deauthorize.`
	cmd.Example = `  feedmq device update 3 --name esp32-shed --description "moved to the shed"`
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		if f.Changed("name") {
			u.Name = &name
		}
		if f.Changed("description") {
			u.Description = &description
		}
		if u.Name == nil && u.Description == nil {
			return errors.New("nothing to update; give --name or --description")
		}
		return nil
	}
	cmd.Flags().StringVar(&name, "name", "", "new device name")
	cmd.Flags().StringVar(&description, "description", "", "new description")
	return cmd
}

func newDeviceResetPasswordCommand() *cobra.Command {
	var creds credentialOptions
	cmd := deviceIDCommand("reset-password ID [--format text|json|env|arduino] [--output FILE]",
		"Give a device a new password; the old one stops working and its connections are closed",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			f, err := creds.openOutput()
			if err != nil {
				return err
			}
			c, err := a.ResetPassword(ctx, id)
			if err != nil {
				abandon(f)
				return err
			}
			return creds.emit(cmd, f, c, "has a new password")
		})
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return creds.check(cmd) }
	creds.addFlags(cmd)
	return cmd
}

// deviceIDCommand builds a command that takes one device ID and runs f.
func deviceIDCommand(use, short string, f func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  oneID("device"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := parseID("device", args[0])
			if err != nil {
				return err
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				return deviceHint(f(cmd, ctx, a, id))
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newDeviceListCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List devices, whether each is connected now and when it last published",
		Long: `List devices. The running server adds, for each, whether it is connected
now, since when, from which address and on which listener (mqtt, mqtts, ws
or wss), and when it last published an accepted entry (since the server
started). Without a running server no device is connected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				list, err := a.ListDevices(ctx)
				if err != nil {
					return err
				}
				acts, err := a.DeviceActivity(ctx)
				if err != nil {
					return err
				}
				if asJSON(cmd) {
					out := make([]auth.DeviceJSON, len(list))
					for i, d := range list {
						out[i] = auth.NewDeviceJSON(d, "").WithActivity(acts[d.ID])
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return printDeviceList(cmd.OutOrStdout(), list, acts)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newDeviceShowCommand() *cobra.Command {
	return deviceIDCommand("show ID", "Show a device, its channels and live connections (never its password)",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			d, err := a.Device(ctx, id)
			if err != nil {
				return err
			}
			acts, err := a.DeviceActivity(ctx)
			if err != nil {
				return err
			}
			act := acts[id]
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), auth.NewDeviceJSON(d, "").WithActivity(act))
			}
			return printDevice(cmd.OutOrStdout(), d, &act)
		})
}

func newDeviceDeleteCommand() *cobra.Command {
	return deviceIDCommand("delete ID", "Delete a device and close its connections",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			if err := a.DeleteDevice(ctx, id); err != nil {
				return err
			}
			return printDone(cmd, id, "deleted", fmt.Sprintf("Device %d deleted.", id))
		})
}

func newDeviceAuthorizeCommand() *cobra.Command {
	var (
		chans  []string
		grants []auth.Grant
	)
	cmd := deviceIDCommand("authorize ID --channel ID[:pub|:sub|:pubsub]...",
		"Give a device rights on channels (replacing its rights on those channels)",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			d, err := a.AuthorizeDevice(ctx, id, grants)
			if err != nil {
				return err
			}
			return printDeviceResult(cmd, d)
		})
	cmd.PreRunE = func(*cobra.Command, []string) (err error) {
		if len(chans) == 0 {
			return errors.New("give at least one --channel, e.g. --channel 3:pub")
		}
		grants, err = parseGrants(chans)
		return err
	}
	cmd.Flags().StringArrayVar(&chans, "channel", nil, channelFlagUsage)
	return cmd
}

func newDeviceDeauthorizeCommand() *cobra.Command {
	var ch string
	cmd := deviceIDCommand("deauthorize ID --channel ID",
		"Remove a device's rights on a channel; its subscriptions stop receiving at once",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			chID, _ := parseID("channel", ch) // checked in PreRunE
			d, err := a.DeauthorizeDevice(ctx, id, chID)
			if err != nil {
				if errors.Is(err, auth.ErrNoGrant) {
					return withHint(err, fmt.Sprintf("feedmq device show %d", id))
				}
				return err
			}
			return printDeviceResult(cmd, d)
		})
	cmd.PreRunE = func(*cobra.Command, []string) error {
		if ch == "" {
			return errors.New("give the --channel to remove, e.g. --channel 3")
		}
		if strings.Contains(ch, ":") {
			return fmt.Errorf("invalid --channel %q: deauthorize removes all rights on a channel, give just its ID", ch)
		}
		_, err := parseID("channel", ch)
		return err
	}
	cmd.Flags().StringVar(&ch, "channel", "", "channel to remove the device's rights on")
	return cmd
}
