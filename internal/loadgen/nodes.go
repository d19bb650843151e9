package loadgen

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Roles of a run's connections, for spreading them over several nodes.
const (
	rolePublisher  = iota // fanin and latency publishers, connect workers, idle connections
	roleSubscriber        // the subscribers of fanin and latency
	roleFanoutPub         // the one fanout publisher
	roleFanoutSub         // fanout subscribers
)

// nodeFor returns which of n nodes the i-th connection of a role goes
// to. Publishers (and connect workers and idle connections) go round
// robin over every node, so that the load of writing spreads. Subscribers
// sit where the traffic must cross between nodes: the subscriber of
// fanin and latency on the last node (with n nodes, n-1 of n publishers
// are elsewhere), fanout's publisher on the first node and its
// subscribers round robin over the others. With one node, everything is
// on it.
func nodeFor(role, i, n int) int {
	if n <= 1 {
		return 0
	}
	switch role {
	case roleSubscriber:
		return n - 1
	case roleFanoutPub:
		return 0
	case roleFanoutSub:
		return 1 + i%(n-1)
	default:
		return i % n
	}
}

// ParseAddrs splits a comma-separated list of broker addresses
// (HOST:PORT), refusing empty items, malformed addresses and repeats.
func ParseAddrs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("--addr is empty; give HOST:PORT, or several separated by commas")
	}
	var out []string
	seen := make(map[string]bool)
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			return nil, fmt.Errorf("--addr %q has an empty address between commas", s)
		}
		if err := checkAddr(a); err != nil {
			return nil, fmt.Errorf("--addr: %w", err)
		}
		_, port, err := net.SplitHostPort(hostPort(a))
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("--addr: %q is not HOST:PORT or ws://HOST:PORT/PATH", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("--addr: %s is given twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}
