package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// underSystemd reports whether feedmq runs as a systemd service: systemd
// sets INVOCATION_ID for every unit it starts and JOURNAL_STREAM when
// stdout or stderr goes to the journal.
func underSystemd() bool {
	return os.Getenv("JOURNAL_STREAM") != "" || os.Getenv("INVOCATION_ID") != ""
}

// notifier reports serve's state to systemd over $NOTIFY_SOCKET for a
// Type=notify unit (configs/feedmq.service). Without $NOTIFY_SOCKET, as
// outside systemd, every call does nothing.
type notifier struct {
	log *slog.Logger
	// notify sends one state message; daemon.SdNotify in production.
	notify func(state string) (bool, error)
	// watchdogInterval returns WatchdogSec= (0 when off); daemon's
	// SdWatchdogEnabled in production.
	watchdogInterval func() (time.Duration, error)
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{
		log:              log,
		notify:           func(state string) (bool, error) { return daemon.SdNotify(false, state) },
		watchdogInterval: func() (time.Duration, error) { return daemon.SdWatchdogEnabled(false) },
	}
}

// send sends state; a failure is logged, never fatal: the service manager
// will notice a missing READY=1 or WATCHDOG=1 on its own.
func (n *notifier) send(state string) {
	sent, err := n.notify(state)
	if err != nil {
		n.log.Warn("systemd notification failed", "state", firstLine(state), "error", err)
		return
	}
	if sent {
		n.log.Debug("systemd notified", "state", strings.ReplaceAll(state, "\n", " "))
	}
}

// Ready tells systemd that every listener is bound and the store is open;
// status is shown by `systemctl status`.
func (n *notifier) Ready(status string) {
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Stopping tells systemd that a clean shutdown has begun.
func (n *notifier) Stopping() {
	n.send(daemon.SdNotifyStopping + "\nSTATUS=shutting down")
}

// Reload runs reload between RELOADING=1 and READY=1, as systemd expects
// from a service that handles SIGHUP (ExecReload= sends it). The service
// is ready again whether or not reload succeeded: it keeps serving with
// what it had, and the error is returned to be logged.
func (n *notifier) Reload(reload func() error, status string) error {
	// MONOTONIC_USEC ties this reload to the moment systemd sent SIGHUP
	// (required by Type=notify-reload, harmless for Type=notify).
	state := daemon.SdNotifyReloading
	if usec := monotonicUsec(); usec > 0 {
		state += fmt.Sprintf("\nMONOTONIC_USEC=%d", usec)
	}
	n.send(state)
	err := reload()
	if err != nil {
		status = "reload failed, still serving: " + firstLine(err.Error())
	}
	n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
	return err
}

// StartWatchdog sends WATCHDOG=1 at half of WatchdogSec= until the
// returned stop function is called. Without a watchdog it starts nothing.
func (n *notifier) StartWatchdog() (stop func()) {
	interval, err := n.watchdogInterval()
	if err != nil {
		n.log.Warn("systemd watchdog settings unusable; not sending keep-alives", "error", err)
	}
	if err != nil || interval <= 0 {
		return func() {}
	}
	period := interval / 2
	n.log.Debug("systemd watchdog enabled", "timeout", interval, "ping_every", period)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n.send(daemon.SdNotifyWatchdog)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done); wg.Wait() })
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC= with.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
