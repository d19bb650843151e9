package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/feedmq/feedmq/admin"
	"github.com/feedmq/feedmq/auth"
	"github.com/feedmq/feedmq/internal/fdlimit"
	"github.com/feedmq/feedmq/internal/loadgen"
)

// benchDefaultClients is each scenario's --clients default.
var benchDefaultClients = map[string]int{"fanin": 100, "fanout": 100, "latency": 1, "connect": 4, "idle": 1000, "failover": 30}

// benchFailoverRate is each failover device's default publish rate, per
// second: a PUBACK every 50 ms, the resolution of the times measured.
const benchFailoverRate = 20

func newBenchCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench SCENARIO --addr HOST:PORT",
		Short: "Load-test a running broker: fanin, fanout, latency, connect, idle or failover; or the disk: disk",
		Long: `bench drives a running broker with its own lean MQTT 3.1.1 client and reports
what it measured. Every run is bounded by --messages and --duration.

Scenarios:
  fanin    --clients devices (default 100), each publishing to its own channel
           (payload field1=..&field2=..) at --qos; QoS 1 keeps one publish in
           flight per device. One subscriber on channels/+/subscribe counts
           the deliveries.
  fanout   one channel, one publisher, --clients subscribers (default 100).
  latency  one publisher at --rate (default 1000/s), one subscriber;
           publish-to-delivery latency p50/p99/p99.9.
  connect  --clients workers (default 4) connecting with device credentials,
           waiting for CONNACK and disconnecting: connects per second.
  disk     no broker: a 120-byte record written in place and made durable
           (O_DIRECT|O_DSYNC where the file system has it, else fdatasync)
           in a file under --data, at --rate (default 1000/s; 0 = as fast as
           one writer can), the way feedmq's log commits a lone entry: the
           floor under a durable broker's latency on that disk (an SD card
           is often the bound on a Raspberry Pi).
  idle     --clients anonymous connections (default 1000), connected within
           --duration and then held for --duration; with --pid, the broker's
           memory per connection. Against a loopback address they come from
           127.0.0.2, 127.0.0.3, ..., each address used for at most half the
           ephemeral port range, so 100000 connections fit. Each connection
           is a file descriptor in bench and in the broker: bench raises its
           open-file limit to what --clients needs and says when it cannot,
           and warns when the broker's limit (with --pid) is lower. RSS is
           read at the end of the hold; a Go broker's heap may grow for a
           minute or two towards its GC goal: hold longer for the steady
           state.
  failover --clients devices (default 30), each publishing to its own channel
           at QoS 1 (--rate in all, default 20/s per device) through a
           round-robin TCP balancer that bench runs on 127.0.0.1 in front
           of the nodes of --addr (a connection a node refuses goes to the
           next). A device whose connection ends, or whose PUBACK does not
           come within 10 s, connects again at once and resends. With
           --kill N, bench kills node N (SIGKILL to the Nth --pid) and
           reports the time until every device that was on it is connected
           again and has a PUBACK. With --restart-db COMMAND, bench runs
           COMMAND (sh -c; it must restart the database and return once it
           accepts connections, e.g. pg_ctl restart -w) and reports the
           time until every device has a PUBACK again, and each device's
           longest pause. Each wait is bounded by --duration (default 30s).

On feedmq, bench creates its channels (public, named bench-...) and devices
through the admin socket of the serve running on --data, and deletes them
afterwards. Subscribers connect anonymously, so anonymous connections must be
allowed (the default). With --plain, bench uses topics bench/SCENARIO/<n>
(fanin counts on bench/fanin/#) and no
authentication instead, for any MQTT broker such as Mosquitto.

With --free (fanin, fanout, latency), the same topics bench/SCENARIO/<n> are
feedmq's free topics: each publisher is a device of its own with the access
rule "write bench/#", and the subscribers connect anonymously, allowed by an
anonymous rule "read bench/#" for the run; bench creates both through the
admin socket and removes them afterwards. With --plain, --free changes
nothing, so one command line measures feedmq's free topics and Mosquitto
alike.

Several nodes of a cluster: --addr takes their addresses separated by
commas (and --pid their process IDs, in the same order). Publishers, connect
workers and idle connections go round robin over the nodes; the subscriber
of fanin and latency is on the last node and fanout's publisher on the first
with its subscribers round robin over the others, so that messages cross
between nodes. Channels and devices are created through the serve on --data
(one node: the cluster shares them); connections and subscriptions that
another node refuses at first are tried again for 15 s while the change
reaches it.

With --addr ws://HOST:PORT/PATH (feedmq's is ws://HOST:8083/mqtt), every
connection of the run is MQTT over WebSocket (subprotocol "mqtt"), each packet
one binary message: the idle scenario then measures what a browser tab or a
paho client over WebSocket costs the broker. failover runs over TCP only.

With --pid (the broker's process ID) bench reads the broker's CPU time
(utime+stime in /proc/PID/stat) and RSS (/proc/PID/status): broker CPU
seconds per million delivered messages (connect: per million connects).`,
		Example: `  feedmq bench fanin --addr 127.0.0.1:1883 --data /var/lib/feedmq --qos 1 --pid $(pidof feedmq)
  feedmq bench latency --addr 127.0.0.1:1883 --data ./feedmq-data --rate 500 --duration 20s
  feedmq bench fanout --addr 127.0.0.1:1884 --plain --clients 50 --json
  feedmq bench fanin --addr 127.0.0.1:1883 --data ./feedmq-data --free --qos 1
  feedmq bench fanout --addr 127.0.0.1:1883,127.0.0.1:1884 --pid 4101,4102 --data ./node1-data
  feedmq bench idle --addr ws://127.0.0.1:8083/mqtt --clients 10000 --pid $(pidof feedmq)`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(loadgen.Scenarios, args[0]) {
				return fmt.Errorf("%s takes one scenario: %s, e.g. `%s fanin --addr 127.0.0.1:1883`",
					cmd.CommandPath(), strings.Join(loadgen.Scenarios, ", "), cmd.CommandPath())
			}
			return nil
		},
		RunE: runBench,
	}
	f := cmd.Flags()
	f.String("addr", "127.0.0.1:1883", "MQTT address of the broker to test: HOST:PORT (TCP), or ws://HOST:PORT/PATH for MQTT\nover WebSocket; the nodes of a cluster separated by commas")
	f.Bool("plain", false, "plain topics bench/SCENARIO/<n> without authentication, for any MQTT broker (Mosquitto)")
	f.Bool("free", false, "free topics bench/SCENARIO/<n> on feedmq, by devices allowed to write bench/# (fanin, fanout, latency)")
	f.Int("clients", 0, "devices (fanin), subscribers (fanout), workers (connect) or connections (idle);\n0 = the scenario's default (100, 100, 1, 4, 1000)")
	f.Int("qos", 0, "publish QoS: 0 or 1 (1: one publish in flight per client, acknowledged before the next)")
	f.Int64("messages", 100000, "at most this many publishes (connect: connects) in the run")
	f.Duration("duration", 10*time.Second, "at most this long for the run (idle: for connecting, and then how long connections are held)")
	f.Float64("rate", 0, "total publishes (connect: connects) per second; 0 = as fast as possible (latency: 1000)")
	f.IntSlice("pid", nil, "process ID of the broker, for its CPU seconds and RSS from /proc;\nthe nodes' separated by commas, in the order of --addr (added up)")
	f.Int("kill", 0, "failover: kill node N (from 1, in the order of --addr) with SIGKILL to its --pid")
	f.String("restart-db", "", "failover: a shell command that restarts the database and returns once it accepts connections")
	f.Bool("json", false, "print the result as JSON")
	return cmd
}

func runBench(cmd *cobra.Command, args []string) error {
	f := cmd.Flags()
	cfg := loadgen.Config{Scenario: args[0]}
	addr, _ := f.GetString("addr")
	addrs, err := loadgen.ParseAddrs(addr)
	if err != nil {
		return err
	}
	cfg.Addr = addrs[0]
	if len(addrs) > 1 {
		cfg.Addrs = addrs
	}
	cfg.Plain, _ = f.GetBool("plain")
	cfg.Free, _ = f.GetBool("free")
	cfg.Clients, _ = f.GetInt("clients")
	qos, _ := f.GetInt("qos")
	cfg.Messages, _ = f.GetInt64("messages")
	cfg.Duration, _ = f.GetDuration("duration")
	cfg.Rate, _ = f.GetFloat64("rate")
	pids, _ := f.GetIntSlice("pid")
	asJSON, _ := f.GetBool("json")
	if qos != 0 && qos != 1 {
		return fmt.Errorf("--qos must be 0 or 1, not %d", qos)
	}
	cfg.QoS = byte(qos)
	if cfg.Clients == 0 {
		cfg.Clients = benchDefaultClients[cfg.Scenario]
	}
	if !f.Changed("rate") && (cfg.Scenario == "latency" || cfg.Scenario == "disk") {
		cfg.Rate = 1000
	}
	cfg.Kill, _ = f.GetInt("kill")
	restart, _ := f.GetString("restart-db")
	if (cfg.Kill != 0 || restart != "") && cfg.Scenario != "failover" {
		return errors.New("--kill and --restart-db apply to failover only")
	}
	if cfg.Scenario == "failover" {
		if !f.Changed("rate") {
			cfg.Rate = benchFailoverRate * float64(cfg.Clients)
		}
		if !f.Changed("duration") {
			cfg.Duration = 30 * time.Second
		}
		if cfg.Kill != 0 {
			if len(pids) != len(addrs) {
				return fmt.Errorf("--kill needs the process ID of every node in --pid, in the order of --addr (%d addresses, %d process IDs)",
					len(addrs), len(pids))
			}
			cfg.KillNode = func(i int) error { return syscall.Kill(pids[i], syscall.SIGKILL) }
		}
		if strings.TrimSpace(restart) != "" {
			cfg.RestartDB = func(ctx context.Context) error { return runRestart(ctx, cmd.ErrOrStderr(), restart) }
		} else if f.Changed("restart-db") {
			return errors.New("--restart-db is empty; give the command that restarts the database")
		}
	}
	for _, pid := range pids {
		if _, err := loadgen.ProcCPU(pid); err != nil || pid <= 0 {
			if err == nil {
				err = errors.New("not a process ID")
			}
			return fmt.Errorf("--pid %d: %w; give the process ID of the broker, e.g. --pid $(pidof feedmq)", pid, err)
		}
		// Each node holds its share of the connections.
		per := (cfg.Clients + len(pids) - 1) / len(pids)
		if n, err := loadgen.ProcFileLimit(pid); err == nil && n < int64(per)+fdlimit.Reserve {
			fmt.Fprintf(cmd.ErrOrStderr(), "feedmq bench: warning: the broker (PID %d) may open at most %d files "+
				"(Max open files in /proc/%d/limits), too few for %d connections; raise its LimitNOFILE or ulimit -n\n",
				pid, n, pid, per)
		}
	}
	cfg.PIDs = pids

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Scenario == "disk" {
		return runBenchDisk(ctx, cmd, cfg, asJSON)
	}
	if !cfg.Plain && cfg.Scenario != "idle" {
		prov, err := openBenchProvisioner(cmd)
		if err != nil {
			return err
		}
		defer func() {
			// Clean up even after an interrupt.
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if cerr := prov.cleanup(cctx); cerr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "feedmq bench: cleaning up: %v\n", cerr)
			}
		}()
		cfg.Provisioner = prov
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	return printBenchResult(cmd.OutOrStdout(), res)
}

// runRestart runs a database restart command with sh, its output on w.
func runRestart(ctx context.Context, w io.Writer, command string) error {
	c := exec.CommandContext(ctx, "sh", "-c", command)
	c.Stdout, c.Stderr = w, w
	if err := c.Run(); err != nil {
		return fmt.Errorf("--restart-db command: %w", err)
	}
	return nil
}

// runBenchDisk measures commits on the disk of the --data directory.
func runBenchDisk(ctx context.Context, cmd *cobra.Command, cfg loadgen.Config, asJSON bool) error {
	conf, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(conf.dataDir(), 0o700); err != nil {
		return fmt.Errorf("bench disk: %w", err)
	}
	res, err := loadgen.Disk(ctx, conf.dataDir(), cfg.Messages, cfg.Duration, cfg.Rate)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(cmd.OutOrStdout(), res)
	}
	t := newTable(cmd.OutOrStdout())
	t.row("scenario", "disk (120 bytes written in place, made durable)")
	t.row("method", res.Method)
	t.row("directory", res.Addr)
	t.row("commits", fmt.Sprintf("%d in %.3fs (%.0f/s)", res.Sent, res.Seconds, res.Rate))
	if l := res.Latency; l != nil {
		t.row("latency", fmt.Sprintf("p50 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms  (%d samples)", l.P50, l.P99, l.P999, l.Max, l.Samples))
	}
	return t.flush()
}

// benchProvisioner creates bench channels and devices through the admin
// socket of a running serve, and deletes them afterwards.
type benchProvisioner struct {
	a        admin.Conn
	channels []uint64
	devices  []uint64
	undo     func(context.Context) error // puts the anonymous rules back
}

func openBenchProvisioner(cmd *cobra.Command) (*benchProvisioner, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	a, err := admin.Dial(cfg.dataDir())
	if err != nil && !errors.Is(err, admin.ErrNoServer) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("no feedmq serve answers on %s; bench creates its channels and devices through it: "+
			"give the --data directory of the running server, or use --plain for other brokers", cfg.socketPath())
	}
	return &benchProvisioner{a: a}, nil
}

func (p *benchProvisioner) Channel(ctx context.Context, name string) (uint64, error) {
	c, err := p.a.CreateChannel(ctx, auth.ChannelSpec{Name: name, Description: "created by feedmq bench; deleted when it ends", Public: true})
	if err != nil {
		return 0, fmt.Errorf("creating channel %s: %w", name, err)
	}
	p.channels = append(p.channels, c.ID)
	return c.ID, nil
}

func (p *benchProvisioner) Device(ctx context.Context, name string, ch uint64) (loadgen.Options, error) {
	cr, err := p.a.CreateDevice(ctx, auth.DeviceSpec{Name: name, Grants: []auth.Grant{{ChannelID: ch, Publish: true, Subscribe: true}}})
	if err != nil {
		return loadgen.Options{}, fmt.Errorf("creating device %s: %w (bench needs one device per client; see limits in the configuration)", name, err)
	}
	p.devices = append(p.devices, cr.Device.ID)
	return loadgen.Options{ClientID: cr.Device.ClientID, Username: cr.Device.Username, Password: cr.Password}, nil
}

func (p *benchProvisioner) FreeDevice(ctx context.Context, name, pattern string) (loadgen.Options, error) {
	cr, err := p.a.CreateDevice(ctx, auth.DeviceSpec{Name: name, Rules: []auth.Rule{{Access: auth.AccessWrite, Pattern: pattern}}})
	if err != nil {
		return loadgen.Options{}, fmt.Errorf("creating device %s: %w (bench needs one device per client; see limits in the configuration)", name, err)
	}
	p.devices = append(p.devices, cr.Device.ID)
	return loadgen.Options{ClientID: cr.Device.ClientID, Username: cr.Device.Username, Password: cr.Password}, nil
}

// AllowAnonymousRead adds the anonymous rule "read PATTERN" for the run,
// unless the anonymous rules already allow reading that pattern; cleanup
// puts back the rule the list had on it, or removes the one added.
func (p *benchProvisioner) AllowAnonymousRead(ctx context.Context, pattern string) error {
	cur, err := p.a.AccessRules(ctx)
	if err != nil {
		return fmt.Errorf("reading the access rules: %w", err)
	}
	var prev *auth.Rule
	for _, r := range cur.Anonymous {
		if r.Pattern == pattern {
			prev = &r
		}
	}
	if prev != nil && prev.Access&auth.AccessRead != 0 {
		return nil
	}
	anon := auth.RuleTarget{Scope: auth.ScopeAnonymous}
	if _, err := p.a.AllowRules(ctx, anon, []auth.Rule{{Access: auth.AccessRead, Pattern: pattern}}); err != nil {
		return fmt.Errorf("letting anonymous subscribers read %s: %w", pattern, err)
	}
	p.undo = func(ctx context.Context) error {
		if prev != nil {
			_, err := p.a.AllowRules(ctx, anon, []auth.Rule{*prev})
			return err
		}
		_, err := p.a.DisallowRules(ctx, anon, []string{pattern})
		return err
	}
	return nil
}

// cleanup deletes what the run created and closes the admin connection.
func (p *benchProvisioner) cleanup(ctx context.Context) error {
	var errs []error
	if p.undo != nil {
		if err := p.undo(ctx); err != nil {
			errs = append(errs, fmt.Errorf("anonymous rules: %w", err))
		}
	}
	for _, id := range p.devices {
		if err := p.a.DeleteDevice(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("device %d: %w", id, err))
		}
	}
	for _, id := range p.channels {
		if err := p.a.DeleteChannel(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("channel %d: %w", id, err))
		}
	}
	errs = append(errs, p.a.Close())
	return errors.Join(errs...)
}

// printBenchResult writes a result as a two-column table.
func printBenchResult(w io.Writer, r *loadgen.Result) error {
	t := newTable(w)
	name := r.Scenario
	if r.Scenario == "fanin" || r.Scenario == "fanout" || r.Scenario == "latency" {
		free := ""
		if r.Free {
			free = ", free topics"
		}
		name += fmt.Sprintf(" (QoS %d%s)", r.QoS, free)
	}
	if r.Failover != nil {
		return printFailover(w, r)
	}
	t.row("scenario", name)
	if r.Nodes > 1 {
		t.row("broker", fmt.Sprintf("%s at %s (%d nodes)", r.Broker, r.Addr, r.Nodes))
	} else {
		t.row("broker", fmt.Sprintf("%s at %s", r.Broker, r.Addr))
	}
	t.row("clients", r.Clients)
	if r.Scenario == "idle" {
		t.row("connected in", fmt.Sprintf("%.3fs", r.Seconds))
	} else {
		t.row("duration", fmt.Sprintf("%.3fs", r.Seconds))
	}
	switch r.Scenario {
	case "connect", "idle":
		t.row("connects", fmt.Sprintf("%d attempted, %d accepted, %d failed", r.Sent, r.Acked, r.Errors))
		if r.FirstError != "" {
			t.row("first failure", r.FirstError)
		}
		if r.Scenario == "connect" {
			t.row("rate", fmt.Sprintf("%.0f connects/s", r.Rate))
		}
	default:
		t.row("sent", fmt.Sprintf("%d (%.0f msgs/s)", r.Sent, r.SentRate))
		if r.QoS == 1 {
			t.row("acked", r.Acked)
		}
		t.row("delivered", fmt.Sprintf("%d of %d expected", r.Delivered, r.Expected))
		t.row("rate", fmt.Sprintf("%.0f msgs/s delivered", r.Rate))
		if r.Errors > 0 {
			t.row("errors", r.Errors)
		}
	}
	if r.CPUSeconds != nil {
		s := fmt.Sprintf("%.2f s", *r.CPUSeconds)
		if r.CPUPerMillion != nil {
			unit := "messages"
			if r.Scenario == "connect" {
				unit = "connects"
			}
			s += fmt.Sprintf(" (%.1f s per million %s)", *r.CPUPerMillion, unit)
		}
		t.row("broker CPU", s)
	}
	if l := r.Latency; l != nil {
		what := "latency"
		if r.Scenario == "connect" {
			what = "CONNACK latency"
		}
		t.row(what, fmt.Sprintf("p50 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms  (%d samples)", l.P50, l.P99, l.P999, l.Max, l.Samples))
	}
	if r.RSSBytes > 0 {
		t.row("broker RSS", fmt.Sprintf("%.1f MiB", float64(r.RSSBytes)/(1<<20)))
	}
	if r.RSSPerConn != 0 {
		t.row("RSS per connection", fmt.Sprintf("%.1f KiB", float64(r.RSSPerConn)/1024))
	}
	return t.flush()
}

// printFailover writes a failover result as a two-column table.
func printFailover(w io.Writer, r *loadgen.Result) error {
	f := r.Failover
	t := newTable(w)
	t.row("scenario", "failover (QoS 1 through a round-robin balancer)")
	t.row("broker", fmt.Sprintf("%s at %s (%d nodes), balancer %s", r.Broker, r.Addr, max(r.Nodes, 1), f.Proxy))
	t.row("devices", fmt.Sprintf("%d, %.0f publishes/s each asked", f.Devices, f.RatePerDevice))
	t.row("publishes", fmt.Sprintf("%d sent, %d acknowledged in %.1fs; %d connections ended", r.Sent, r.Acked, r.Seconds, f.Disconnects))
	if k := f.Kill; k != nil {
		t.row("killed", fmt.Sprintf("node %d (%s), holding %d devices", k.Node, k.Addr, k.Devices))
		t.row("back", fmt.Sprintf("%d of %d connected again with a PUBACK", k.Recovered, k.Devices))
		t.row("reconnected", fmt.Sprintf("p50 %.0fms  max %.0fms after the kill", k.ReconnectP50, k.ReconnectMax))
		t.row("publishing", fmt.Sprintf("p50 %.0fms  max %.0fms after the kill (first PUBACK)", k.RecoverP50, k.RecoverMax))
		t.row("other devices", fmt.Sprintf("longest pause %.0fms", k.OthersMaxGap))
	}
	if d := f.DB; d != nil {
		t.row("database restart", fmt.Sprintf("%.0fms", d.Restart))
		t.row("resumed", fmt.Sprintf("%d of %d devices; p50 %.0fms  max %.0fms after the restart", d.Resumed, f.Devices, d.ResumeP50, d.ResumeMax))
		t.row("pause per device", fmt.Sprintf("p50 %.0fms  max %.0fms without a PUBACK", d.GapP50, d.GapMax))
	}
	return t.flush()
}
