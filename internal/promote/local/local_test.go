package local

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

func TestInterval_FlagFileAndStages(t *testing.T) {
	tests := []struct {
		name      string
		file      time.Duration
		stages    []time.Duration
		flag      time.Duration
		flagGiven bool
		want      time.Duration
	}{
		{name: "flag default, file silent", flag: 5 * time.Minute, want: 5 * time.Minute},
		{name: "file wins over the flag's default", file: time.Minute, flag: 5 * time.Minute, want: time.Minute},
		{name: "flag given wins over the file", file: time.Minute, flag: 10 * time.Minute, flagGiven: true, want: 10 * time.Minute},
		{name: "a stage shortens it", file: time.Minute, stages: []time.Duration{0, 20 * time.Second}, flag: 5 * time.Minute, want: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &config.Config{Interval: tt.file}
			for _, d := range tt.stages {
				cfg.Stages = append(cfg.Stages, stage.Spec{Interval: d})
			}
			if got := Interval(cfg, tt.flag, tt.flagGiven); got != tt.want {
				t.Errorf("Interval = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOnceError_CountsFailedStagesOrKeepsThePassError(t *testing.T) {
	sts := []stage.Status{{Name: "a", Decision: stage.DecisionFailed, Error: "boom"}, {Name: "b", Decision: stage.DecisionWait}}
	stageErr := fmt.Errorf("pass: %w", &stage.StageError{Stage: "a", Err: errors.New("boom")})
	if err := OnceError(stageErr, sts); err == nil || err.Error() != "1 stage(s) failed; see REASON above" {
		t.Errorf("stage failure: %v", err)
	}
	cut := errors.New("the pass did not finish within --pass-timeout (1s)")
	if err := OnceError(cut, sts); !errors.Is(err, cut) {
		t.Errorf("pass cut short: %v", err)
	}
	if err := OnceError(nil, sts); err != nil {
		t.Errorf("clean pass: %v", err)
	}
}
