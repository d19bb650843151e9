package adminsock

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"
)

// DialTimeout bounds connecting to the socket. A live server accepts at
// once; a server that is gone refuses at once.
const DialTimeout = 2 * time.Second

// Client is a connection to a Server. Its methods may be called
// concurrently; calls are sent one at a time.
type Client struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	broken error // set once a call fails mid-exchange
}

// Dial connects to the server at path. It returns an error wrapping
// ErrNoServer when the socket does not exist or nothing listens on it.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, DialTimeout)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %s", ErrNoServer, path)
		}
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return &Client{conn: conn, r: bufio.NewReader(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Call sends op with args (encoded as JSON; nil for none) and decodes the
// result into result (a pointer, or nil to discard it). An error answered
// by the server is returned as *Error; transport failures are wrapped. The
// deadline and cancellation of ctx apply to the whole exchange.
func (c *Client) Call(ctx context.Context, op string, args, result any) error {
	req := request{Op: op}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("encode %s arguments: %w", op, err)
		}
		req.Args = raw
	}
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", op, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.exchange(ctx, append(line, '\n'))
	if err != nil {
		return fmt.Errorf("admin socket %s: %w", op, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if result == nil || resp.Result == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, result); err != nil {
		return fmt.Errorf("decode %s result: %w", op, err)
	}
	return nil
}

// exchange writes one request line and reads one response line; the
// caller holds c.mu.
func (c *Client) exchange(ctx context.Context, line []byte) (*response, error) {
	if c.broken != nil {
		return nil, c.broken
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	_ = c.conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, err := c.roundTrip(line)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		} else if !deadline.IsZero() && !time.Now().Before(deadline) {
			err = context.DeadlineExceeded // the socket timer fired first
		}
		c.broken = fmt.Errorf("connection unusable after an earlier failure: %w", err)
		return nil, err
	}
	return resp, nil
}

func (c *Client) roundTrip(line []byte) (*response, error) {
	if _, err := c.conn.Write(line); err != nil {
		return nil, fmt.Errorf("send request: %w", bareNetError(err))
	}
	answer, err := c.r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("no answer from server: %w", bareNetError(err))
	}
	var resp response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return nil, fmt.Errorf("malformed answer: %w", err)
	}
	return &resp, nil
}

// bareNetError drops the addresses from a *net.OpError: the peer address
// of a unix socket is the temporary name the server bound, which would
// only confuse a reader.
func bareNetError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}
