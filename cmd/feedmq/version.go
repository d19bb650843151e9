package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// commit is the source revision, set at build time with
// -ldflags "-X main.commit=..." (make build, make release). Without it,
// the revision the go command stamped into the binary is used, if any.
var commit = ""

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the feedmq version, Go version and source commit",
		Long: `Print the feedmq version on the first line, then the Go version and platform
it was built with, and the source commit when it is known.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "feedmq %s\n", version)
			fmt.Fprintf(w, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			if c := sourceCommit(); c != "" {
				fmt.Fprintf(w, "commit: %s\n", c)
			}
			return nil
		},
	}
}

// sourceCommit returns the commit set with -X main.commit, else the VCS
// revision stamped by the go command (with " (modified)" for a dirty
// tree), else "".
func sourceCommit() string {
	if commit != "" {
		return commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += " (modified)"
	}
	return rev
}
