// The whole CLI lives in CliApp so that tests can run it in-process with their own writers.
return Palimpsest.Cli.CliApp.Run(args, Console.Out, Console.Error);
