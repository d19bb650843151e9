package main

import (
	"errors"
	"log/slog"

	"github.com/feedmq/feedmq/internal/fdlimit"
)

// fewOpenFiles is the open-file limit below which serve warns even
// without max_connections: it would cap MQTT connections at tens of
// thousands. systemd gives services 524288 (feedmq.service asks 1048576).
const fewOpenFiles = 65536

// checkFileLimit raises the soft open-file limit to the hard limit (Go
// does it at start; this reads the result) and warns when it caps MQTT
// connections below what the configuration allows: every connection holds
// a file descriptor, and past the limit new connections wait in the
// listen queue while accept fails.
func checkFileLimit(log *slog.Logger, maxConns int) {
	soft, hard, err := fdlimit.Raise(0)
	if errors.Is(err, errors.ErrUnsupported) {
		return
	}
	if err != nil {
		log.Warn("cannot raise the open file limit", "error", err)
		return
	}
	room := int64(soft) - fdlimit.Reserve
	switch {
	case maxConns > 0 && int64(maxConns) > room:
		log.Warn("the open file limit allows fewer MQTT connections than max_connections",
			"open_files", soft, "hard_limit", hard, "connections", room, "max_connections", maxConns,
			"hint", "raise LimitNOFILE (systemd) or ulimit -n")
	case maxConns == 0 && soft < fewOpenFiles:
		log.Warn("the open file limit caps MQTT connections",
			"open_files", soft, "hard_limit", hard, "connections", room,
			"hint", "raise LimitNOFILE (systemd) or ulimit -n")
	default:
		log.Debug("open file limit", "open_files", soft, "hard_limit", hard)
	}
}
