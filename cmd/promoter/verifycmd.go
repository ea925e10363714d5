package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newVerifyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify STAGE",
		Short: "Run the verification of the freight a stage runs again",
		Long: "verify forgets the stage's verdict on the tag it runs and, in the cluster, deletes its\n" +
			"verification Jobs and AnalysisRun: the next pass verifies it again, and stages downstream\n" +
			"wait for the new verdict. Locally (--config) the next pass of `promoter run` runs the\n" +
			"stage's verify command again.",
		Args: cobra.ExactArgs(1),
		RunE: g.onBackend(func(ctx context.Context, b backend, args []string) error {
			v, err := b.Reverify(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "verifying %s in %s again on the next pass\n", v, args[0])
			return nil
		}),
	}
}
