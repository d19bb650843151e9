package broker

import (
	"sync/atomic"
	"time"
)

// handlerPool runs connection handlers on reused goroutines. A new
// goroutine starts with a small stack and grows it, by copying, to the
// ~16 KiB that mochi's CONNECT handling needs (its frames pass 800-byte
// packets by value): in a connect storm, starting goroutines and growing
// their stacks took ~9% of the broker's CPU. A goroutine whose connection
// has ended waits a moment for the next one; at most maxIdleHandlers wait.
type handlerPool struct {
	work chan func()
	idle atomic.Int32
}

const (
	// handlerIdle is how long a finished handler goroutine waits for a
	// new connection before it ends.
	handlerIdle = 2 * time.Second
	// maxIdleHandlers bounds the goroutines waiting, so that the end of
	// a storm does not leave thousands of them behind.
	maxIdleHandlers = 64
)

func newHandlerPool() *handlerPool { return &handlerPool{work: make(chan func())} }

// run runs f on a waiting goroutine, or on a new one when none waits.
func (p *handlerPool) run(f func()) {
	select {
	case p.work <- f:
	default:
		go p.loop(f)
	}
}

// loop runs f, then the handlers handed to it while it waits. Its frame
// is on the stack of every connection's goroutine, idle ones included:
// the wait is in next.
func (p *handlerPool) loop(f func()) {
	var t *time.Timer
	for f != nil {
		f()
		f = p.next(&t)
	}
}

// next waits for the next handler; nil: this goroutine ends.
//
//go:noinline
func (p *handlerPool) next(t **time.Timer) func() {
	if p.idle.Add(1) > maxIdleHandlers {
		p.idle.Add(-1)
		return nil
	}
	if *t == nil {
		*t = time.NewTimer(handlerIdle)
	} else {
		(*t).Reset(handlerIdle)
	}
	select {
	case f := <-p.work:
		p.idle.Add(-1)
		return f
	case <-(*t).C:
		p.idle.Add(-1)
		return nil
	}
}
