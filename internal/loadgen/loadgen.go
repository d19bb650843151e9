package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/feedmq/feedmq/internal/fdlimit"
)

// Scenarios, in the order they are documented.
var Scenarios = []string{"fanin", "fanout", "latency", "connect", "idle", "disk", "failover"}

// Provisioner creates what a feedmq run needs through the instance's
// admin interface.
type Provisioner interface {
	// Channel creates a public channel for the run and returns its ID.
	Channel(ctx context.Context, name string) (uint64, error)
	// Device creates a device that may publish and subscribe on channel
	// and returns what it connects with.
	Device(ctx context.Context, name string, channel uint64) (Options, error)
	// FreeDevice creates a device whose access rules allow it to publish
	// on the free topics that pattern matches, and returns what it
	// connects with.
	FreeDevice(ctx context.Context, name, pattern string) (Options, error)
	// AllowAnonymousRead lets anonymous connections subscribe to the free
	// topics that pattern matches, until the provisioner cleans up.
	AllowAnonymousRead(ctx context.Context, pattern string) error
}

// Config is one benchmark run.
type Config struct {
	Scenario string
	Addr     string
	// Addrs, when set, are the nodes of one service (a cluster), and Addr
	// is not used: the run spreads its connections over them (nodeFor),
	// and waits at setup for what it provisioned through one node to be
	// known on the others.
	Addrs []string
	// Plain uses topics bench/<scenario>/<n> and anonymous connections
	// (client IDs bench-...), for any MQTT
	// broker (Mosquitto); otherwise feedmq topics and devices, created
	// with Provisioner.
	Plain bool
	// Free (feedmq) uses the free topics bench/<scenario>/<n>, as Plain
	// does: publishers are devices whose access rules allow them to
	// write bench/#, subscribers anonymous connections allowed to read it
	// (as on channels, where they read public channels), both set up with
	// Provisioner. With Plain it changes nothing: plain topics are free
	// topics.
	Free        bool
	Provisioner Provisioner
	// Clients: publishing devices (fanin), subscribers (fanout),
	// connecting workers (connect), connections held (idle).
	Clients int
	QoS     byte
	// Messages bounds the publishes (fanin, fanout, latency) or connects
	// (connect) of the run; Duration bounds its time. Both are required.
	Messages int64
	Duration time.Duration
	// Rate is the total publish (or connect) rate per second; 0 means as
	// fast as the broker takes them. latency needs one.
	Rate float64
	// PID of the broker, for its CPU time and memory from /proc; 0 for
	// none.
	PID int
	// PIDs of several brokers (the nodes of Addrs), with PID: their CPU
	// times and memory are added up.
	PIDs []int
	// DialTimeout bounds each connect; Drain bounds the wait for
	// deliveries after the last publish.
	DialTimeout, Drain time.Duration
	// Kill (failover) is the node to kill, from 1 in the order of Addrs (0:
	// none); KillNode kills the node of that index (from 0), as SIGKILL
	// does. RestartDB (failover, nil: none) restarts the database and
	// returns once it accepts connections again.
	Kill      int
	KillNode  func(i int) error
	RestartDB func(ctx context.Context) error
	// PerSource (idle) is how many connections to a loopback address
	// share one source address; 0 means half the system's ephemeral port
	// range (see sourceAddrs).
	PerSource int
}

// Result is what a run measured. Rates are per second of the run.
type Result struct {
	Scenario string `json:"scenario"`
	Broker   string `json:"broker"`          // "feedmq", or "plain" for --plain
	Addr     string `json:"addr"`            // several separated by commas
	Nodes    int    `json:"nodes,omitempty"` // how many addresses
	// Method (disk) is how each record was made durable.
	Method    string  `json:"method,omitempty"`
	Clients   int     `json:"clients"`
	QoS       int     `json:"qos"`
	Free      bool    `json:"free,omitempty"` // on free topics (bench/...)
	Sent      int64   `json:"sent"`
	Delivered int64   `json:"delivered"`
	Expected  int64   `json:"expected"` // deliveries expected from sent
	Acked     int64   `json:"acked"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"duration_s"`
	SentRate  float64 `json:"sent_per_s"`
	// Rate is the scenario's headline: deliveries per second (fanin,
	// fanout, latency) or accepted connects per second (connect).
	Rate float64 `json:"rate_per_s"`
	// Broker CPU seconds during the run, and per million delivered
	// messages (or accepted connects); with a PID only.
	CPUSeconds    *float64 `json:"broker_cpu_s,omitempty"`
	CPUPerMillion *float64 `json:"broker_cpu_s_per_million,omitempty"`
	RSSBytes      int64    `json:"broker_rss_bytes,omitempty"`
	// RSSPerConn (idle): broker RSS growth divided by the connections.
	RSSPerConn int64    `json:"broker_rss_per_conn_bytes,omitempty"`
	Latency    *Latency `json:"latency,omitempty"`
	// FirstError is the first failed connect of an idle run.
	FirstError string `json:"first_error,omitempty"`
	// Failover is what a failover run measured.
	Failover *FailoverResult `json:"failover,omitempty"`
}

// maxSamples bounds the latency samples kept (8 bytes each).
const maxSamples = 2_000_000

// Run runs one scenario, bounded by cfg.Messages and cfg.Duration (plus
// setup and a drain of at most cfg.Drain).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Scenario == "latency" {
		cfg.Clients = 1 // one publisher, one subscriber
	}
	if cfg.Clients < 1 {
		return nil, errors.New("--clients must be at least 1")
	}
	if cfg.QoS > 1 {
		return nil, errors.New("--qos must be 0 or 1")
	}
	if cfg.Duration <= 0 {
		return nil, errors.New("--duration must be positive")
	}
	if cfg.Messages <= 0 {
		return nil, errors.New("--messages must be positive")
	}
	if cfg.Free && cfg.Scenario != "fanin" && cfg.Scenario != "fanout" && cfg.Scenario != "latency" {
		return nil, errors.New("--free applies to fanin, fanout and latency only")
	}
	if !cfg.Plain && cfg.Provisioner == nil && cfg.Scenario != "idle" {
		return nil, errors.New("a feedmq run needs the admin socket (--data) to create channels and devices; use --plain for other brokers")
	}
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = []string{cfg.Addr}
	}
	for _, a := range cfg.Addrs {
		if err := checkAddr(a); err != nil {
			return nil, err
		}
		if isWS(a) && cfg.Scenario == "failover" {
			return nil, errors.New("failover runs over TCP (host:port): its balancer forwards TCP connections")
		}
	}
	if cfg.PID != 0 {
		cfg.PIDs = append([]int{cfg.PID}, cfg.PIDs...)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 5 * time.Second
	}
	if err := ensureFiles(cfg.Clients); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, base: time.Now(), res: &Result{Scenario: cfg.Scenario, Broker: "feedmq", Addr: strings.Join(cfg.Addrs, ","),
		Nodes: len(cfg.Addrs), Clients: cfg.Clients, QoS: int(cfg.QoS), Free: cfg.Free}}
	if cfg.Plain {
		r.res.Broker = "plain"
	}
	defer r.closeAll()
	defer r.stopOn(ctx)()
	if r.free() {
		if err := cfg.Provisioner.AllowAnonymousRead(ctx, freePattern); err != nil {
			return nil, err
		}
	}
	var err error
	switch cfg.Scenario {
	case "fanin":
		err = r.fanin(ctx)
	case "fanout":
		err = r.fanout(ctx)
	case "latency":
		if cfg.Rate <= 0 {
			return nil, errors.New("latency needs --rate")
		}
		err = r.latency(ctx)
	case "connect":
		err = r.connect(ctx)
	case "idle":
		err = r.idle(ctx)
	case "failover":
		err = r.failover(ctx)
	case "disk":
		return nil, errors.New("disk takes no broker: call Disk")
	default:
		return nil, fmt.Errorf("unknown scenario %q; one of fanin, fanout, latency, connect, idle, failover", cfg.Scenario)
	}
	if err != nil {
		return nil, err
	}
	return r.res, nil
}

// run is the state of one Run.
type run struct {
	cfg  Config
	base time.Time // timestamps in payloads are nanoseconds since base
	res  *Result

	mu      sync.Mutex
	conns   []*Conn
	held    []net.Conn // idle connections
	samples []time.Duration

	sent, acked, delivered, errs atomic.Int64
	claimed                      atomic.Int64 // publishes claimed from cfg.Messages
	lastDelivery                 atomic.Int64 // since base
	stop                         atomic.Bool

	cpu0 time.Duration
	t0   time.Time
}

func (r *run) track(c *Conn) *Conn {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	return c
}

func (r *run) closeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		c.Close()
	}
	for _, c := range r.held {
		c.Close()
	}
	r.conns, r.held = nil, nil
}

// ensureFiles raises this process's open-file limit to hold n
// connections (and a subscriber or publisher more, in the reserve), or
// says why it cannot.
func ensureFiles(n int) error {
	need := uint64(n) + fdlimit.Reserve
	soft, hard, err := fdlimit.Raise(need)
	if errors.Is(err, errors.ErrUnsupported) || soft >= need {
		return nil
	}
	return fmt.Errorf("%d connections need about %d open files, but bench may open only %d (RLIMIT_NOFILE, hard limit %d; "+
		"only root with CAP_SYS_RESOURCE can raise the hard limit): raise it with `ulimit -n %d` or use fewer --clients",
		n, need, soft, hard, need)
}

// setupWait bounds how long, with several nodes, a connection or a
// subscription refused at setup is tried again: a device or channel
// created through one node reaches the others a moment later.
const setupWait = 15 * time.Second

// addr is the address of the node that the i-th connection of role goes
// to.
func (r *run) addr(role, i int) string {
	return r.cfg.Addrs[nodeFor(role, i, len(r.cfg.Addrs))]
}

// multi reports whether the run spreads over several nodes.
func (r *run) multi() bool { return len(r.cfg.Addrs) > 1 }

// dial connects the i-th connection of role. With several nodes, a
// refused CONNECT is tried again for up to setupWait.
func (r *run) dial(role, i int, o Options) (*Conn, error) {
	deadline := time.Now().Add(setupWait)
	for {
		c, err := Dial(r.addr(role, i), o, r.cfg.DialTimeout)
		ce := (*ConnackError)(nil)
		if err != nil && r.multi() && errors.As(err, &ce) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		return r.track(c), nil
	}
}

// anon returns the options of an anonymous connection.
func anon(id string) Options { return Options{ClientID: "bench-" + id} }

// freePattern is the access rule pattern of a free run's devices.
const freePattern = "bench/#"

// free reports whether the run uses feedmq's free topics.
func (r *run) free() bool { return r.cfg.Free && !r.cfg.Plain }

// target is a publisher: its connection options and topic, and the
// channel it writes to (feedmq).
type target struct {
	opts    Options
	topic   string
	channel uint64
}

// targets provisions n publishers on their own channels (fanin), or
// on one shared channel when shared (fanout, latency: n is 1).
func (r *run) targets(ctx context.Context, n int) ([]target, error) {
	ts := make([]target, n)
	for i := range ts {
		if r.cfg.Plain {
			ts[i] = target{opts: anon(fmt.Sprintf("pub-%d", i)), topic: fmt.Sprintf("bench/%s/%d", r.cfg.Scenario, i)}
			continue
		}
		name := fmt.Sprintf("bench-%s-%d", r.cfg.Scenario, i)
		if r.cfg.Free {
			o, err := r.cfg.Provisioner.FreeDevice(ctx, name, freePattern)
			if err != nil {
				return nil, err
			}
			ts[i] = target{opts: o, topic: fmt.Sprintf("bench/%s/%d", r.cfg.Scenario, i)}
			continue
		}
		ch, err := r.cfg.Provisioner.Channel(ctx, name)
		if err != nil {
			return nil, err
		}
		o, err := r.cfg.Provisioner.Device(ctx, name, ch)
		if err != nil {
			return nil, err
		}
		ts[i] = target{opts: o, topic: fmt.Sprintf("channels/%d/publish", ch), channel: ch}
	}
	return ts, nil
}

// subscribeTopic is the filter that receives target t's messages.
func (r *run) subscribeTopic(t target) string {
	if r.cfg.Plain || r.cfg.Free {
		return t.topic
	}
	return fmt.Sprintf("channels/%d/subscribe", t.channel)
}

// subscriber connects the i-th subscriber of role on filter and starts
// counting what it receives; accept (may be nil) filters by topic. The
// returned WaitGroup is done when the connection closes.
func (r *run) subscriber(role, i int, name, filter string, accept func(topic []byte) bool, wg *sync.WaitGroup) error {
	c, err := r.dial(role, i, anon(name))
	if ce := (*ConnackError)(nil); errors.As(err, &ce) && !r.cfg.Plain {
		return fmt.Errorf("subscriber: %w; bench subscribes anonymously: allow anonymous connections (anonymous: true)", err)
	}
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	codes, err := c.Subscribe(1, filter)
	// With several nodes, a channel created through another node may not
	// be known on this one yet.
	for deadline := time.Now().Add(setupWait); err == nil && r.multi() && (len(codes) != 1 || codes[0] >= 0x80) &&
		time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		codes, err = c.Subscribe(1, filter)
	}
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	if len(codes) != 1 || codes[0] >= 0x80 {
		if r.free() {
			return fmt.Errorf("subscribe to %s refused (SUBACK %#x) although anonymous connections were allowed to read %s", filter, codes, freePattern)
		}
		return fmt.Errorf("subscribe to %s refused (SUBACK %#x)", filter, codes)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		var local []time.Duration
		for {
			p, err := c.ReadPacket()
			if err != nil {
				break
			}
			pub, err := DecodePublish(p)
			if err != nil {
				continue
			}
			if accept != nil && !accept(pub.Topic) {
				continue
			}
			now := time.Since(r.base)
			r.delivered.Add(1)
			r.lastDelivery.Store(int64(now))
			if ts, ok := stamp(pub.Payload); ok && len(local) < maxSamples {
				local = append(local, now-time.Duration(ts))
			}
			if pub.QoS == 1 {
				// Subscriptions ask QoS 0; acknowledge anyway.
				var b [4]byte
				b[0], b[1] = typePuback<<4, 2
				b[2], b[3] = byte(pub.ID>>8), byte(pub.ID)
				_, _ = c.nc.Write(b[:])
			}
		}
		r.addSamples(local)
	}()
	return nil
}

func (r *run) addSamples(s []time.Duration) {
	r.mu.Lock()
	if room := maxSamples - len(r.samples); room > 0 {
		r.samples = append(r.samples, s[:min(room, len(s))]...)
	}
	r.mu.Unlock()
}

// payload appends a publish payload: field1 is a sequence number, field2
// the send time in nanoseconds since the run began.
func (r *run) payload(b []byte, seq int64) []byte {
	b = append(b, "field1="...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, "&field2="...)
	return strconv.AppendInt(b, int64(time.Since(r.base)), 10)
}

// stamp finds the send time in a delivered payload: field2 in the form
// payload (plain brokers pass it through) or in feedmq's entry JSON.
func stamp(p []byte) (int64, bool) {
	i := bytes.Index(p, []byte("field2"))
	if i < 0 {
		return 0, false
	}
	p = p[i+len("field2"):]
	switch {
	case len(p) > 0 && p[0] == '=':
		p = p[1:]
	case bytes.HasPrefix(p, []byte(`":"`)):
		p = p[3:]
	default:
		return 0, false
	}
	var v int64
	n := 0
	for ; n < len(p) && n < 19 && p[n] >= '0' && p[n] <= '9'; n++ {
		v = v*10 + int64(p[n]-'0')
	}
	return v, n > 0
}

// begin starts the measured part of the run and the timer that ends it.
func (r *run) begin() (end func()) {
	if len(r.cfg.PIDs) > 0 {
		waitQuiet(r.cfg.PIDs, 10*time.Second)
		r.cpu0, _ = procCPU(r.cfg.PIDs)
	}
	r.t0 = time.Now()
	t := time.AfterFunc(r.cfg.Duration, func() { r.stop.Store(true) })
	return func() { t.Stop() }
}

// stopOn ends the run early when ctx is cancelled.
func (r *run) stopOn(ctx context.Context) (release func() bool) {
	return context.AfterFunc(ctx, func() { r.stop.Store(true) })
}

// procCPU is the CPU time that the processes pids have used, together.
func procCPU(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		d, err := ProcCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// procRSS is the resident memory of the processes pids, together.
func procRSS(pids []int) (int64, error) {
	var sum int64
	for _, pid := range pids {
		n, err := ProcRSS(pid)
		if err != nil {
			return 0, err
		}
		sum += n
	}
	return sum, nil
}

// waitQuiet waits up to max until the processes pids use less than a
// tenth of a CPU over 200ms together, so that a run is not charged with
// the backlog of the one before.
func waitQuiet(pids []int, max time.Duration) {
	const window = 200 * time.Millisecond
	deadline := time.Now().Add(max)
	prev, err := procCPU(pids)
	for err == nil && time.Now().Before(deadline) {
		time.Sleep(window)
		var cur time.Duration
		if cur, err = procCPU(pids); err == nil {
			if cur-prev < window/10 {
				return
			}
			prev = cur
		}
	}
}

// claim takes one message from the run's budget; false when the run is
// over (count or time).
func (r *run) claim() bool {
	if r.stop.Load() {
		return false
	}
	if r.claimed.Add(1) > r.cfg.Messages {
		r.stop.Store(true)
		return false
	}
	return true
}

// pace sleeps until message n (from 0) of a sender with the given rate is
// due.
func (r *run) pace(n int64, rate float64) {
	if rate <= 0 {
		return
	}
	sleepUntil(dueAt(r.t0, n, rate))
}

// dueAt is when the n-th event (from 0) of a run started at t0 is due at
// rate events per second.
func dueAt(t0 time.Time, n int64, rate float64) time.Time {
	return t0.Add(time.Duration(float64(n) / rate * float64(time.Second)))
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

// publisher publishes until the run ends; QoS 1 waits for each PUBACK
// before the next publish.
func (r *run) publisher(c *Conn, topic string, rate float64) {
	buf := make([]byte, 0, 64)
	var n int64
	id := uint16(0)
	// A publish blocked by a broker that stops reading ends with the run.
	_ = c.nc.SetWriteDeadline(r.t0.Add(r.cfg.Duration))
	_ = c.SetReadDeadline(r.t0.Add(r.cfg.Duration + r.cfg.Drain))
	for r.claim() {
		r.pace(n, rate)
		n++
		seq := r.sent.Load()
		buf = r.payload(buf[:0], seq)
		id = id%65535 + 1
		if err := c.Publish(topic, r.cfg.QoS, id, buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				r.errs.Add(1)
			}
			return
		}
		r.sent.Add(1)
		if r.cfg.QoS == 0 {
			continue
		}
		for {
			p, err := c.ReadPacket()
			if err != nil {
				r.errs.Add(1)
				return
			}
			if p.Type != typePuback {
				continue
			}
			if got, _ := DecodePuback(p); got == id {
				r.acked.Add(1)
				break
			}
		}
	}
}

// drain waits until expected deliveries arrived, or none arrived for a
// second, or cfg.Drain passed; the measured run then ends.
func (r *run) drain(expected func() int64) time.Time {
	sendEnd := time.Now()
	deadline := sendEnd.Add(r.cfg.Drain)
	last, lastChange := r.delivered.Load(), time.Now()
	for time.Now().Before(deadline) {
		d := r.delivered.Load()
		if d >= expected() {
			break
		}
		if d != last {
			last, lastChange = d, time.Now()
		} else if time.Since(lastChange) > time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	end := sendEnd
	if ld := r.base.Add(time.Duration(r.lastDelivery.Load())); ld.After(end) {
		end = ld
	}
	return end
}

// finish fills in the result once the subscribers stopped.
func (r *run) finish(sendEnd, end time.Time, expected int64, work int64) {
	res := r.res
	res.Sent, res.Acked, res.Delivered, res.Errors, res.Expected = r.sent.Load(), r.acked.Load(), r.delivered.Load(), r.errs.Load(), expected
	secs := end.Sub(r.t0).Seconds()
	res.Seconds = round3(secs)
	if s := sendEnd.Sub(r.t0).Seconds(); s > 0 {
		res.SentRate = round3(float64(res.Sent) / s)
	}
	if secs > 0 {
		res.Rate = round3(float64(work) / secs)
	}
	if len(r.cfg.PIDs) > 0 {
		if cpu1, err := procCPU(r.cfg.PIDs); err == nil {
			c := round3((cpu1 - r.cpu0).Seconds())
			res.CPUSeconds = &c
			if work > 0 {
				pm := round3(c / float64(work) * 1e6)
				res.CPUPerMillion = &pm
			}
		}
		res.RSSBytes, _ = procRSS(r.cfg.PIDs)
	}
	r.mu.Lock()
	res.Latency = Summarize(r.samples)
	r.mu.Unlock()
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// fanin: Clients devices, each publishing to its own channel; one
// subscriber on every channel counts the deliveries.
func (r *run) fanin(ctx context.Context) error {
	ts, err := r.targets(ctx, r.cfg.Clients)
	if err != nil {
		return err
	}
	filter, accept := "bench/fanin/#", func([]byte) bool { return true }
	if !r.cfg.Plain && !r.cfg.Free {
		// channels/+/subscribe delivers every public channel; count ours.
		ours := make(map[string]bool, len(ts))
		for _, t := range ts {
			ours[r.subscribeTopic(t)] = true
		}
		filter, accept = "channels/+/subscribe", func(topic []byte) bool { return ours[string(topic)] }
	}
	var subs sync.WaitGroup
	if err := r.subscriber(roleSubscriber, 0, "count", filter, accept, &subs); err != nil {
		return err
	}
	return r.publishAll(rolePublisher, ts, &subs, 1)
}

// publishAll connects the publishers of ts in role, runs them, drains
// and finishes the result; each delivery is expected fanout times.
func (r *run) publishAll(role int, ts []target, subs *sync.WaitGroup, fanout int64) error {
	pubs := make([]*Conn, len(ts))
	for i, t := range ts {
		c, err := r.dial(role, i, t.opts)
		if err != nil {
			return fmt.Errorf("publisher %d: %w", i, err)
		}
		pubs[i] = c
	}
	end := r.begin()
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publisher(c, ts[i].topic, r.cfg.Rate/float64(len(pubs)))
		}()
	}
	wg.Wait()
	end()
	sendEnd := time.Now()
	last := r.drain(func() int64 { return r.sent.Load() * fanout })
	r.closeAll()
	subs.Wait()
	r.finish(sendEnd, last, r.sent.Load()*fanout, r.delivered.Load())
	return nil
}

// fanout: one channel, one publisher, Clients subscribers.
func (r *run) fanout(ctx context.Context) error {
	ts, err := r.targets(ctx, 1)
	if err != nil {
		return err
	}
	var subs sync.WaitGroup
	for i := range r.cfg.Clients {
		if err := r.subscriber(roleFanoutSub, i, fmt.Sprintf("sub-%d", i), r.subscribeTopic(ts[0]), nil, &subs); err != nil {
			return err
		}
	}
	return r.publishAll(roleFanoutPub, ts, &subs, int64(r.cfg.Clients))
}

// latency: one publisher at a fixed rate, one subscriber.
func (r *run) latency(ctx context.Context) error {
	ts, err := r.targets(ctx, 1)
	if err != nil {
		return err
	}
	var subs sync.WaitGroup
	if err := r.subscriber(roleSubscriber, 0, "lat", r.subscribeTopic(ts[0]), nil, &subs); err != nil {
		return err
	}
	return r.publishAll(rolePublisher, ts, &subs, 1)
}

// connect: Clients workers each connect (authenticated with a device of
// their own on feedmq), wait for CONNACK, disconnect, and again.
func (r *run) connect(ctx context.Context) error {
	opts := make([]Options, r.cfg.Clients)
	for i := range opts {
		if r.cfg.Plain {
			opts[i] = anon(fmt.Sprintf("conn-%d", i))
			continue
		}
		name := fmt.Sprintf("bench-connect-%d", i)
		ch, err := r.cfg.Provisioner.Channel(ctx, name)
		if err != nil {
			return err
		}
		if opts[i], err = r.cfg.Provisioner.Device(ctx, name, ch); err != nil {
			return err
		}
	}
	if r.multi() {
		// Each worker's device known on its node before the clock runs.
		for i, o := range opts {
			c, err := r.dial(rolePublisher, i, o)
			if err != nil {
				return fmt.Errorf("connect worker %d: %w", i, err)
			}
			_ = c.Disconnect()
		}
		r.closeAll()
	}
	end := r.begin()
	var wg sync.WaitGroup
	for i, o := range opts {
		addr := r.addr(rolePublisher, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			var n int64
			for r.claim() {
				r.pace(n, r.cfg.Rate/float64(len(opts)))
				n++
				r.sent.Add(1)
				start := time.Now()
				c, err := Dial(addr, o, r.cfg.DialTimeout)
				if err != nil {
					r.errs.Add(1)
					continue
				}
				local = append(local, time.Since(start))
				r.acked.Add(1)
				// Let the broker close first, so that the TIME_WAIT is
				// its own and not a local port.
				_, _ = c.nc.Write([]byte{typeDisconnect << 4, 0})
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				_, _ = c.ReadPacket()
				c.Close()
			}
			r.addSamples(local)
		}()
	}
	wg.Wait()
	end()
	now := time.Now()
	r.finish(now, now, 0, r.acked.Load())
	return nil
}

// maxIdleFailures ends the connecting of an idle run after this many
// connects in a row failed: the broker or the system is at a limit.
const maxIdleFailures = 100

// idle: connect Clients connections (anonymous, keepalive 0), for at most
// Duration, and hold them for Duration; with a PID, the broker's RSS
// growth per connection. The connections are spread over source addresses
// (sourceAddrs) and held without a goroutine or buffer each.
func (r *run) idle(ctx context.Context) error {
	// Connection i goes to node i%n, as the i/n-th connection there; each
	// node's connections have source addresses of their own.
	n := len(r.cfg.Addrs)
	perNode := (r.cfg.Clients + n - 1) / n
	srcsOf := make([][]*net.TCPAddr, n)
	for k, addr := range r.cfg.Addrs {
		srcs, err := sourceAddrs(addr, perNode, r.cfg.PerSource)
		if err != nil {
			return err
		}
		if len(srcs) > 0 {
			// Where 127.0.0.2 cannot be bound (not Linux), one source must do.
			ln, err := net.ListenTCP("tcp4", srcs[0])
			if err != nil {
				if len(srcs) > 1 {
					return fmt.Errorf("%d connections need %d source addresses (127.0.0.2...): %w", perNode, len(srcs), err)
				}
				srcs = nil
			} else {
				ln.Close()
			}
		}
		srcsOf[k] = srcs
	}
	var rss0 int64
	if len(r.cfg.PIDs) > 0 {
		var err error
		if rss0, err = procRSS(r.cfg.PIDs); err != nil {
			return err
		}
	}
	end := r.begin() // Duration bounds the connecting
	var next, failures atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	for range min(r.cfg.Clients, 32) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(r.cfg.Clients) || r.stop.Load() || ctx.Err() != nil {
					return
				}
				node := nodeFor(rolePublisher, int(i), n)
				var src *net.TCPAddr
				if srcs := srcsOf[node]; len(srcs) > 0 {
					src = srcs[(i/int64(n))%int64(len(srcs))]
				}
				r.sent.Add(1)
				// A CONNACK is 4 bytes; the connection is read no more.
				c, err := dial(r.cfg.Addrs[node], src, anon(fmt.Sprintf("idle-%d", i)), r.cfg.DialTimeout, 16)
				if err != nil {
					r.errs.Add(1)
					firstErr.Do(func() { r.res.FirstError = err.Error() })
					if failures.Add(1) >= maxIdleFailures {
						r.stop.Store(true)
					}
					continue
				}
				failures.Store(0)
				r.mu.Lock()
				r.held = append(r.held, c.nc)
				r.mu.Unlock()
				r.acked.Add(1)
			}
		}()
	}
	wg.Wait()
	end()
	connected := time.Now()
	select {
	case <-time.After(r.cfg.Duration):
	case <-ctx.Done():
	}
	var rss1 int64
	if len(r.cfg.PIDs) > 0 {
		rss1, _ = procRSS(r.cfg.PIDs)
	}
	r.finish(connected, connected, 0, r.acked.Load())
	if n := r.acked.Load(); n > 0 && rss1 > 0 {
		r.res.RSSPerConn = (rss1 - rss0) / n
		r.res.RSSBytes = rss1
	}
	r.res.CPUPerMillion = nil
	return nil
}

// sourceAddrs returns the local addresses that n connections to addr are
// spread over, round robin, at most perSource on each: 127.0.0.2,
// 127.0.0.3, ... when addr is an IPv4 loopback address, so that more
// connections fit than one address has ephemeral ports, and bench's
// ports do not compete with other clients of 127.0.0.1. It returns nil
// for other addresses (the system chooses). perSource 0 means half the
// ephemeral port range.
func sourceAddrs(addr string, n, perSource int) ([]*net.TCPAddr, error) {
	host, _, err := net.SplitHostPort(hostPort(addr))
	if err != nil {
		return nil, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() || !ip.IsLoopback() {
		return nil, nil
	}
	if perSource <= 0 {
		perSource = ephemeralPorts() / 2
	}
	k := max(1, (n+perSource-1)/perSource)
	const most = 253 // 127.0.0.2 to 127.0.0.254
	if k > most {
		return nil, fmt.Errorf("%d connections at %d per source address need %d addresses; bench uses at most %d (127.0.0.2-127.0.0.254)",
			n, perSource, k, most)
	}
	srcs := make([]*net.TCPAddr, k)
	for i := range srcs {
		srcs[i] = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i))}
	}
	return srcs, nil
}

// ephemeralPorts is the size of the system's ephemeral port range, from
// /proc/sys/net/ipv4/ip_local_port_range (Linux's default where there is
// none).
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, err1 := strconv.Atoi(f[0])
			hi, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && hi >= lo && lo > 0 {
				return hi - lo + 1
			}
		}
	}
	return 60999 - 32768 + 1
}
