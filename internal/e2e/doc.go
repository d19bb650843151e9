// Package e2e holds end-to-end tests that build the feedmq binary and run
// it as a separate process, so they can kill it like a power cut would.
package e2e
