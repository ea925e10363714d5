package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/stage"
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
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var v string
			if g.config != "" {
				e, _, err := g.engine(ctx, g.logger())
				if err != nil {
					return err
				}
				// The tag the stage runs is known after a look at Git.
				var se *stage.StageError
				if err := e.Refresh(ctx); err != nil && !errors.As(err, &se) {
					return err
				}
				if v, err = e.Reverify(ctx, args[0]); err != nil {
					return err
				}
			} else {
				tok, err := g.token()
				if err != nil {
					return err
				}
				if v, err = api.NewClient(g.addr, tok, &http.Client{Timeout: 2 * time.Minute}).Reverify(ctx, args[0]); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "verifying %s in %s again on the next pass\n", v, args[0])
			return nil
		},
	}
}
