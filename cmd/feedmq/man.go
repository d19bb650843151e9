package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCommand generates the man pages (make man, make install). It is
// hidden: users read the pages, not the generator.
func newManCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write man pages for feedmq and every subcommand into DIR",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, _ := cmd.Flags().GetString("dir")
			if dir == "" {
				return fmt.Errorf("%s needs --dir DIR", cmd.CommandPath())
			}
			return writeManPages(cmd.Root(), dir)
		},
	}
	cmd.Flags().String("dir", "", "directory to write feedmq.1, feedmq-serve.1, ... into (created if missing)")
	return cmd
}

// writeManPages writes one section-1 page per visible command. The date
// comes from $SOURCE_DATE_EPOCH when set, so pages can be reproducible.
func writeManPages(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root.DisableAutoGenTag = true // no "Auto generated ... on DATE" footer
	// cobra adds the completion command only when the tree runs; the
	// pages should list it either way.
	root.InitDefaultCompletionCmd()
	header := &doc.GenManHeader{
		Section: "1",
		Source:  "feedmq " + version,
		Manual:  "feedmq manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	return nil
}
