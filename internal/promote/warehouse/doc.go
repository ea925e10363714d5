// Package warehouse discovers which image version a stage should run: it lists a
// repository's tags, ranks them by a Selection's strategy and returns freight.
//
// It is shaped like go-containerregistry's remote package: New takes functional
// options, one Warehouse (safe for concurrent use) serves every stage, and each
// registry host gets its own rate limit and retry policy so a failing registry only
// delays the stages that use it.
package warehouse
