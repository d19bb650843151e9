package loadgen

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Proxy is a round-robin TCP balancer on a loopback port, standing in for
// HAProxy or a cloud balancer in front of a cluster's nodes: each new
// connection goes to the next backend, and when that one refuses the
// connection, to the one after it (HAProxy's "option redispatch"). It
// checks no health: a dead node costs each connection one refused dial,
// which on loopback is immediate. It remembers which backend each client
// connection went to, so a failover run knows whose devices a killed node
// held.
type Proxy struct {
	ln       net.Listener
	backends []string
	timeout  time.Duration

	mu    sync.Mutex
	next  int
	via   map[string]int // client address (as the proxy sees it): backend
	conns map[net.Conn]struct{}
	done  bool
	wg    sync.WaitGroup
}

// NewProxy listens on 127.0.0.1 (a free port) and forwards to backends.
// dialTimeout bounds each dial to a backend.
func NewProxy(backends []string, dialTimeout time.Duration) (*Proxy, error) {
	if len(backends) == 0 {
		return nil, errors.New("proxy: no backends")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, backends: backends, timeout: dialTimeout,
		via: make(map[string]int), conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Backend returns the index of the backend that the client connection
// from local (the client's own address) was sent to.
func (p *Proxy) Backend(local net.Addr) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.via[local.String()]
	return i, ok
}

// Close stops accepting and closes every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	p.done = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// add tracks c, unless the proxy is closing.
func (p *Proxy) add(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	if !p.add(c) {
		c.Close()
		return
	}
	client := c.RemoteAddr().String()
	defer func() {
		c.Close()
		p.mu.Lock()
		delete(p.conns, c)
		delete(p.via, client)
		p.mu.Unlock()
	}()
	p.mu.Lock()
	first := p.next
	p.next = (p.next + 1) % len(p.backends)
	p.mu.Unlock()
	var b net.Conn
	idx := -1
	for k := range p.backends {
		i := (first + k) % len(p.backends)
		var err error
		if b, err = net.DialTimeout("tcp", p.backends[i], p.timeout); err == nil {
			idx = i
			break
		}
	}
	if idx < 0 {
		return // every backend refused: the client sees its connection closed
	}
	if !p.add(b) {
		b.Close()
		return
	}
	if tc, ok := b.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	p.mu.Lock()
	p.via[client] = idx
	p.mu.Unlock()
	defer func() {
		b.Close()
		p.mu.Lock()
		delete(p.conns, b)
		p.mu.Unlock()
	}()
	// Either side ending ends both: a killed node's clients see their
	// connection closed, as behind a real balancer.
	ended := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(b, c); ended <- struct{}{} }()
	go func() { _, _ = io.Copy(c, b); ended <- struct{}{} }()
	<-ended
	c.Close()
	b.Close()
	<-ended
}
