package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/channels"
)

const bindingListHint = "feedmq channel bindings"

// bindingJSON is the --json shape of a binding.
type bindingJSON struct {
	ID        uint64            `json:"id"`
	ChannelID uint64            `json:"channel_id"`
	Topic     string            `json:"topic"`
	Fields    map[string]string `json:"fields"` // bound fields only: field<N> -> path
	Status    string            `json:"status,omitempty"`
	Latitude  string            `json:"latitude,omitempty"`
	Longitude string            `json:"longitude,omitempty"`
	Elevation string            `json:"elevation,omitempty"`
	// TimePath is the path of each entry's created_at; absent for the
	// time the publish arrived.
	TimePath  string `json:"created_at_path,omitempty"`
	CreatedAt string `json:"created_at"` // when the binding was made
}

func newBindingJSON(b *channels.Binding) bindingJSON {
	fields := make(map[string]string)
	for i, p := range b.Fields {
		if p != "" {
			fields[channels.FieldName(i+1)] = p
		}
	}
	return bindingJSON{ID: b.ID, ChannelID: b.ChannelID, Topic: b.Topic, Fields: fields,
		Status: b.Status, Latitude: b.Latitude, Longitude: b.Longitude, Elevation: b.Elevation,
		TimePath: b.CreatedAt, CreatedAt: formatJSONTime(b.Created)}
}

// bindingValues lists what a binding extracts, as "field1=$.x status=$.y".
func bindingValues(b *channels.Binding) string {
	var parts []string
	for i, p := range b.Fields {
		if p != "" {
			parts = append(parts, channels.FieldName(i+1)+"="+p)
		}
	}
	for _, kv := range [][2]string{{"status", b.Status}, {"latitude", b.Latitude}, {"longitude", b.Longitude},
		{"elevation", b.Elevation}, {"created_at", b.CreatedAt}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+kv[1])
		}
	}
	return oneLine(strings.Join(parts, " "))
}

func printBindingList(w io.Writer, list []channels.Binding) error {
	t := newTable(w)
	t.row("ID", "CHANNEL", "TOPIC", "VALUES", "CREATED")
	for i := range list {
		b := &list[i]
		t.row(b.ID, b.ChannelID, oneLine(b.Topic), bindingValues(b), formatTime(b.Created))
	}
	return t.flush()
}

type bindOptions struct {
	topic, status, createdAt       string
	latitude, longitude, elevation string
	fields                         []string
}

func (o *bindOptions) binding(ch uint64) (channels.Binding, error) {
	b := channels.Binding{ChannelID: ch, Topic: o.topic, Status: o.status, CreatedAt: o.createdAt,
		Latitude: o.latitude, Longitude: o.longitude, Elevation: o.elevation}
	if o.topic == "" {
		return b, errors.New(`--topic is required, e.g. --topic 'zigbee2mqtt/living_room'`)
	}
	for _, f := range o.fields {
		n, path, err := channels.ParseFieldBinding(f)
		if err != nil {
			return b, fmt.Errorf("--field: %s", channels.ErrorMessage(err))
		}
		if b.Fields[n-1] != "" {
			return b, fmt.Errorf("--field: field%d is bound twice", n)
		}
		b.Fields[n-1] = path
	}
	if len(o.fields) == 0 && o.status == "" {
		return b, errors.New(`give at least one --field N=PATH or --status PATH, e.g. --field 1='$.temperature'`)
	}
	return b, nil
}

func newChannelBindCommand() *cobra.Command {
	var o bindOptions
	cmd := channelIDCommand("bind CHANNEL --topic FILTER --field N=PATH... [--status PATH] [--created-at PATH] [--latitude PATH] [--longitude PATH] [--elevation PATH]",
		"Turn every publish on a free topic into an entry of the channel",
		func(cmd *cobra.Command, ctx context.Context, a admin.Service, id uint64) error {
			b, err := o.binding(id)
			if err != nil {
				return err
			}
			made, err := a.Bind(ctx, b)
			if err != nil {
				return err
			}
			if asJSON(cmd) {
				return writeJSON(cmd.OutOrStdout(), newBindingJSON(made))
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Binding %d: publishes on %s feed channel %d (%s).\n",
				made.ID, oneLine(made.Topic), made.ChannelID, bindingValues(made))
			return err
		})
	cmd.Long = `Bind a free topic (wildcards + and # allowed) to a channel: every publish on
a matching topic that its publisher may write (access rules) also becomes an
entry of the channel, stored and delivered like a publish to
channels/<id>/publish. The publisher needs no grant on the channel.

Each PATH picks one value out of the payload:
  $               the whole payload (a plain number, as ESPHome and Shelly send)
  $.a.b           key b of the object at key a of a JSON payload
  $.a[0]          the first element of the array at key a
  $['my key']     a key with spaces, dots or colons
In a form-encoded payload (temperature=21.5&hum=40), $.temperature is the
value of temperature.

Fields and location take numbers: a JSON number, a string holding one, or
true/false (stored as 1/0). The status takes any text. A path that is missing
or null leaves its value unset; a payload with none of the paths stores
nothing, and a value that is present but not a number stores nothing either.
--created-at reads the entry's time from the payload (RFC 3339, or seconds
or milliseconds since 1970); without it the entry gets the time of arrival.
Failures are counted in feedmq_binding_failures_total and logged.`
	cmd.Example = `  feedmq channel bind 1 --topic 'zigbee2mqtt/living_room' --field 1='$.temperature' --field 2='$.humidity' --status '$.battery'
  feedmq channel bind 2 --topic 'tele/plug1/SENSOR' --field 1='$.ENERGY.Power' --field 2='$.ENERGY.Voltage'
  feedmq channel bind 3 --topic 'esphome-weather/sensor/temperature/state' --field 1='$'`
	f := cmd.Flags()
	f.StringVar(&o.topic, "topic", "", "MQTT topic filter of free topics (required)")
	f.StringArrayVar(&o.fields, "field", nil, "bind field N to PATH, as N=PATH (repeatable; N from 1 to 8)")
	f.StringVar(&o.status, "status", "", "path of the entry's status")
	f.StringVar(&o.createdAt, "created-at", "", "path of the entry's time (default: when the publish arrived)")
	f.StringVar(&o.latitude, "latitude", "", "path of the entry's latitude")
	f.StringVar(&o.longitude, "longitude", "", "path of the entry's longitude")
	f.StringVar(&o.elevation, "elevation", "", "path of the entry's elevation")
	return cmd
}

func newChannelUnbindCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "unbind BINDING-ID",
		Short: "Delete a binding; its topic stops feeding the channel at once",
		Args:  oneID("binding"),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := channels.ParseID(args[0])
			if err != nil {
				return fmt.Errorf("invalid binding ID %q: IDs are whole numbers from 1 without leading zeros; see `%s`", args[0], bindingListHint)
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				if err := a.Unbind(ctx, id); err != nil {
					return withHint(err, bindingListHint)
				}
				return printDone(cmd, id, "deleted", fmt.Sprintf("Binding %d deleted.", id))
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}

func newChannelBindingsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bindings [CHANNEL]",
		Short: "List the bindings of a channel, or all",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ch uint64
			if len(args) == 1 {
				var err error
				if ch, err = parseID("channel", args[0]); err != nil {
					return err
				}
			}
			return withAdmin(cmd, func(ctx context.Context, a admin.Service) error {
				list, err := a.Bindings(ctx, ch)
				if err != nil {
					return withHint(err, channelListHint)
				}
				if asJSON(cmd) {
					out := make([]bindingJSON, len(list))
					for i := range list {
						out[i] = newBindingJSON(&list[i])
					}
					return writeJSON(cmd.OutOrStdout(), out)
				}
				return printBindingList(cmd.OutOrStdout(), list)
			})
		},
	}
	addJSONFlag(cmd)
	return cmd
}
