package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// FailoverResult is what a failover run measured, in milliseconds. Kill
// is nil without a node to kill, DB without a database restart.
type FailoverResult struct {
	Devices       int         `json:"devices"`
	RatePerDevice float64     `json:"rate_per_device"` // publishes per second asked of each
	Proxy         string      `json:"proxy"`           // the round-robin balancer the devices connect through
	Kill          *KillResult `json:"kill,omitempty"`
	DB            *DBResult   `json:"db,omitempty"`
	Disconnects   int64       `json:"disconnects"` // connections of devices that ended, over the whole run
}

// KillResult: a node was killed while the devices published.
type KillResult struct {
	Node int    `json:"node"` // from 1, in the order of the addresses
	Addr string `json:"addr"`
	// Devices connected to that node when it was killed, and how many of
	// them were connected again (through the balancer, to another node)
	// and had a PUBACK there within the wait.
	Devices   int `json:"devices"`
	Recovered int `json:"recovered"`
	// From the kill to each device's new connection (its CONNACK) and to
	// the first PUBACK on it: median and the slowest device.
	ReconnectP50 float64 `json:"reconnect_p50_ms"`
	ReconnectMax float64 `json:"reconnect_max_ms"`
	RecoverP50   float64 `json:"recover_p50_ms"`
	RecoverMax   float64 `json:"recover_max_ms"`
	// OthersMaxGap is the longest time any device on another node went
	// without a PUBACK meanwhile (they should not notice).
	OthersMaxGap float64 `json:"others_max_gap_ms"`
}

// DBResult: the database was restarted while the devices published.
type DBResult struct {
	// Restart is how long the restart took (until the database accepted
	// connections again, as the restart command says).
	Restart float64 `json:"restart_ms"`
	// From the end of the restart to each device's first PUBACK after it:
	// median and the slowest device; Resumed devices had one within the
	// wait.
	Resumed   int     `json:"resumed"`
	ResumeP50 float64 `json:"resume_p50_ms"`
	ResumeMax float64 `json:"resume_max_ms"`
	// The longest time each device went without a PUBACK from just
	// before the restart until it resumed: median and the longest.
	GapP50 float64 `json:"gap_p50_ms"`
	GapMax float64 `json:"gap_max_ms"`
}

// ackWait is how long a device waits for a PUBACK before it takes its
// connection for dead and connects again.
const ackWait = 10 * time.Second

// device is one publisher of a failover run. Times are since the run's
// base.
type device struct {
	t target

	mu          sync.Mutex
	node        int // backend of the current connection; -1 between connections
	connAt      time.Duration
	ackedOnConn bool
	lastAck     time.Duration
	maxGap      time.Duration // longest time without a PUBACK since resetGap
	disconnects int64
	// Since mark: the first PUBACK on a connection made after it (and when
	// that connection was made), and the first PUBACK at all.
	mark                  time.Duration
	recConnAt, recConnAck time.Duration
	recAny                time.Duration
}

func (d *device) setMark(t time.Duration) {
	d.mu.Lock()
	d.mark, d.recConnAt, d.recConnAck, d.recAny = t, 0, 0, 0
	d.mu.Unlock()
}

func (d *device) resetGap() {
	d.mu.Lock()
	d.maxGap = 0
	d.mu.Unlock()
}

func (d *device) connected(node int, at time.Duration) {
	d.mu.Lock()
	d.node, d.connAt, d.ackedOnConn = node, at, false
	d.mu.Unlock()
}

func (d *device) disconnected() {
	d.mu.Lock()
	d.node = -1
	d.disconnects++
	d.mu.Unlock()
}

func (d *device) acked(at time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lastAck > 0 {
		d.maxGap = max(d.maxGap, at-d.lastAck)
	}
	d.lastAck = at
	if at > d.mark && d.recAny == 0 {
		d.recAny = at
	}
	if !d.ackedOnConn && d.connAt > d.mark && d.recConnAck == 0 {
		d.recConnAt, d.recConnAck = d.connAt, at
	}
	d.ackedOnConn = true
}

// state returns a consistent copy of the fields the run reads.
func (d *device) state() (node int, recConnAt, recConnAck, recAny, maxGap time.Duration, disconnects int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.node, d.recConnAt, d.recConnAck, d.recAny, d.maxGap, d.disconnects
}

// since is the time since the run's base.
func (r *run) since() time.Duration { return time.Since(r.base) }

// failover: Clients devices publish at QoS 1 through a round-robin
// balancer in front of the nodes (Proxy). With Kill, node Kill is killed
// (KillNode) and the run measures until each device that was on it is
// connected again and has a PUBACK; with RestartDB, the database is
// restarted and the run measures until every device has a PUBACK again.
// Each wait is bounded by Duration.
func (r *run) failover(ctx context.Context) error {
	cfg := r.cfg
	if cfg.Kill == 0 && cfg.RestartDB == nil {
		return errors.New("failover needs a node to kill (--kill N) or a database restart (--restart-db COMMAND), or both")
	}
	if cfg.Kill < 0 || cfg.Kill > len(cfg.Addrs) {
		return fmt.Errorf("--kill %d: there are %d nodes (--addr); give 1 to %d", cfg.Kill, len(cfg.Addrs), len(cfg.Addrs))
	}
	if cfg.Kill > 0 && len(cfg.Addrs) < 2 {
		return errors.New("--kill needs at least two nodes (--addr), so that the devices have somewhere to go")
	}
	if cfg.Kill > 0 && cfg.KillNode == nil {
		return errors.New("--kill needs the nodes' process IDs (--pid, in the order of --addr)")
	}
	ts, err := r.targets(ctx, cfg.Clients)
	if err != nil {
		return err
	}
	proxy, err := NewProxy(cfg.Addrs, cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer proxy.Close()
	perDevice := 0.0
	if cfg.Rate > 0 {
		perDevice = cfg.Rate / float64(cfg.Clients)
	}
	fr := &FailoverResult{Devices: cfg.Clients, RatePerDevice: round3(perDevice), Proxy: proxy.Addr()}
	r.res.Failover = fr

	devs := make([]*device, len(ts))
	var wg sync.WaitGroup
	r.t0 = time.Now()
	for i, t := range ts {
		devs[i] = &device{t: t, node: -1}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runDevice(devs[i], proxy, perDevice)
		}()
	}
	defer func() {
		r.stop.Store(true)
		r.closeAll()
		wg.Wait()
		r.res.Sent, r.res.Acked = r.sent.Load(), r.acked.Load()
		for _, d := range devs {
			_, _, _, _, _, n := d.state()
			fr.Disconnects += n
		}
		r.res.Seconds = round3(time.Since(r.t0).Seconds())
	}()

	// Every device publishing before anything fails.
	if n, ok := r.waitAll(ctx, devs, nil, setupWait+cfg.Duration); !ok {
		return fmt.Errorf("%d of %d devices had no PUBACK within %v of connecting", len(devs)-n, len(devs), setupWait+cfg.Duration)
	}

	if cfg.Kill > 0 {
		k := cfg.Kill - 1
		var victims, others []*device
		for _, d := range devs {
			if node, _, _, _, _, _ := d.state(); node == k {
				victims = append(victims, d)
			} else {
				others = append(others, d)
			}
		}
		t0 := r.since()
		for _, d := range devs {
			d.setMark(t0)
			d.resetGap()
		}
		if err := cfg.KillNode(k); err != nil {
			return fmt.Errorf("killing node %d: %w", cfg.Kill, err)
		}
		kr := &KillResult{Node: cfg.Kill, Addr: cfg.Addrs[k], Devices: len(victims)}
		fr.Kill = kr
		n, _ := r.waitAll(ctx, victims, func(d *device) bool {
			_, _, ack, _, _, _ := d.state()
			return ack > 0
		}, cfg.Duration)
		kr.Recovered = n
		var reconnect, recover []time.Duration
		for _, d := range victims {
			if _, at, ack, _, _, _ := d.state(); ack > 0 {
				reconnect, recover = append(reconnect, at-t0), append(recover, ack-t0)
			}
		}
		kr.ReconnectP50, kr.ReconnectMax = p50max(reconnect)
		kr.RecoverP50, kr.RecoverMax = p50max(recover)
		var gaps []time.Duration
		for _, d := range others {
			_, _, _, _, gap, _ := d.state()
			gaps = append(gaps, gap)
		}
		_, kr.OthersMaxGap = p50max(gaps)
		if n < len(victims) {
			return nil // the database phase would measure the stragglers
		}
	}

	if cfg.RestartDB != nil {
		// Every device publishing again first (after a kill, the last
		// ones may only just be back).
		mark := r.since()
		for _, d := range devs {
			d.setMark(mark)
		}
		if n, ok := r.waitAll(ctx, devs, nil, cfg.Duration); !ok {
			return fmt.Errorf("%d of %d devices had no PUBACK within %v before the database restart", len(devs)-n, len(devs), cfg.Duration)
		}
		for _, d := range devs {
			d.resetGap()
		}
		t1 := time.Now()
		if err := cfg.RestartDB(ctx); err != nil {
			return fmt.Errorf("restarting the database: %w", err)
		}
		db := &DBResult{Restart: ms(time.Since(t1))}
		fr.DB = db
		t2 := r.since()
		for _, d := range devs {
			d.setMark(t2)
		}
		db.Resumed, _ = r.waitAll(ctx, devs, nil, cfg.Duration)
		var resume, gaps []time.Duration
		for _, d := range devs {
			if _, _, _, any, gap, _ := d.state(); any > 0 {
				resume, gaps = append(resume, any-t2), append(gaps, gap)
			}
		}
		db.ResumeP50, db.ResumeMax = p50max(resume)
		db.GapP50, db.GapMax = p50max(gaps)
	}
	return nil
}

// waitAll waits up to max until done holds for every device (nil: a
// PUBACK since its mark), polling; it returns how many it holds for.
func (r *run) waitAll(ctx context.Context, devs []*device, done func(*device) bool, max time.Duration) (int, bool) {
	if done == nil {
		done = func(d *device) bool {
			_, _, _, any, _, _ := d.state()
			return any > 0
		}
	}
	deadline := time.Now().Add(max)
	for {
		n := 0
		for _, d := range devs {
			if done(d) {
				n++
			}
		}
		if n == len(devs) {
			return n, true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return n, false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runDevice publishes at QoS 1 through the proxy until the run stops,
// one publish in flight; when its connection ends or a PUBACK does not
// come within ackWait, it connects again at once (a refused connect is
// tried again every 50 ms) and resends what was not acknowledged.
func (r *run) runDevice(d *device, p *Proxy, rate float64) {
	buf := make([]byte, 0, 64)
	var seq int64
	id := uint16(0)
	var next time.Time
	for !r.stop.Load() {
		c, err := Dial(p.Addr(), d.t.opts, r.cfg.DialTimeout)
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		r.track(c)
		if r.stop.Load() {
			c.Close()
			return
		}
		node, _ := p.Backend(c.nc.LocalAddr())
		d.connected(node, r.since())
		for !r.stop.Load() {
			if rate > 0 {
				sleepUntil(next)
				next = time.Now().Add(time.Duration(float64(time.Second) / rate))
			}
			id = id%65535 + 1
			buf = r.payload(buf[:0], seq)
			if err := c.Publish(d.t.topic, 1, id, buf); err != nil {
				break
			}
			r.sent.Add(1)
			if !r.awaitPuback(c, id) {
				break
			}
			r.acked.Add(1)
			d.acked(r.since())
			seq++
		}
		c.Close()
		if !r.stop.Load() { // the run's end is no disconnect
			d.disconnected()
		}
	}
}

// awaitPuback reads until the PUBACK of id, for up to ackWait.
func (r *run) awaitPuback(c *Conn, id uint16) bool {
	_ = c.SetReadDeadline(time.Now().Add(ackWait))
	for {
		p, err := c.ReadPacket()
		if err != nil {
			return false
		}
		if p.Type != typePuback {
			continue
		}
		if got, _ := DecodePuback(p); got == id {
			return true
		}
	}
}

// p50max returns the median and the largest of ds in milliseconds.
func p50max(ds []time.Duration) (float64, float64) {
	if len(ds) == 0 {
		return 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return ms(Percentile(s, 50)), ms(s[len(s)-1])
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
