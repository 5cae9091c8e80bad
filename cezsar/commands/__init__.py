"""Thin argparse front-ends, one file per `cezsar` subcommand."""
