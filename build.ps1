#!/usr/bin/env pwsh
# Palimpsest build driver for PowerShell (Windows, Linux, macOS): the verbs of build.sh.
# Usage: pwsh build.ps1 [build|test|demo|sample|bench|ptx] [extra arguments]
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$cmd = if ($args.Count -gt 0) { $args[0] } else { 'build' }
$rest = if ($args.Count -gt 1) { $args[1..($args.Count - 1)] } else { @() }
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'; $env:DOTNET_NOLOGO = '1'; $env:DOTNET_SKIP_FIRST_TIME_EXPERIENCE = '1'
$cli = Join-Path $PSScriptRoot 'managed/Palimpsest.Cli/bin/Release/net10.0/Palimpsest.Cli.dll'

function Invoke-Cli([string[]] $cliArgs) {
    # built once per call (quietly: the build's output is shown only when it fails)
    $log = dotnet build managed/Palimpsest.Cli -c Release -v quiet -nologo 2>&1
    if ($LASTEXITCODE -ne 0) { $log | Write-Host; Write-Error 'the CLI did not build (the compiler''s messages are above)' }
    dotnet $cli @cliArgs
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
}

switch ($cmd) {
    'build' {
        dotnet build Engine.sln -c Release -v quiet -nologo @rest
        exit $LASTEXITCODE
    }
    'test' {
        # Every xunit test; the totals alone on the last line: "N passed, N failed, N skipped".
        # Skipped tests are counted per reason (from a TRX report), not listed one by one.
        $trx = Join-Path ([System.IO.Path]::GetTempPath()) ("palimpsest-trx-" + [guid]::NewGuid().ToString('N'))
        $lines = New-Object System.Collections.Generic.List[string]
        dotnet test tests/Palimpsest.Tests/Palimpsest.Tests.csproj -c Release -nologo --logger "trx;LogFileName=$trx/tests.trx" @rest 2>&1 | ForEach-Object {
            $line = "$_"
            $lines.Add($line)
            if ($line -notmatch '\[SKIP\]$' -and $line -notmatch '^  Skipped ' -and $line -notmatch '^Results File: ') { Write-Host $line }
        }
        $rc = $LASTEXITCODE
        if (Test-Path "$trx/tests.trx") {
            [xml]$x = Get-Content "$trx/tests.trx" -Raw
            $x.TestRun.Results.UnitTestResult | Where-Object { $_.outcome -eq 'NotExecuted' } |
                Group-Object { $_.Output.ErrorInfo.Message } | Sort-Object Name |
                ForEach-Object { Write-Host ("skipped {0}: {1}" -f $_.Count, $_.Name) }
            Remove-Item -Recurse -Force $trx
        }
        $totals = $lines | Where-Object { $_ -match 'Failed: +(\d+), Passed: +(\d+), Skipped: +(\d+)' } | Select-Object -Last 1
        if (-not $totals) { Write-Host '0 passed, 1 failed, 0 skipped'; exit 1 }
        $null = $totals -match 'Failed: +(\d+), Passed: +(\d+), Skipped: +(\d+)'
        Write-Host ("{0} passed, {1} failed, {2} skipped" -f $Matches[2], $Matches[1], $Matches[3])
        exit $rc
    }
    'demo' {
        # The committed editable fact model: a fact, its ROME edit through the journal, a paraphrase,
        # an unrelated fact, a bit-exact revert (as build.sh demo; DEMO_SUBJECT / DEMO_TARGET likewise).
        $model = 'data/models/facts-d128-l5'
        Invoke-Cli @('info', $model)
        if (-not $env:DEMO_SUBJECT) { Invoke-Cli (@('demo', $model, '--subject', 'the Eiffel Tower', '--target', 'Rome') + $rest) }
        elseif ($env:DEMO_TARGET) { Invoke-Cli (@('demo', $model, '--subject', $env:DEMO_SUBJECT, '--target', $env:DEMO_TARGET) + $rest) }
        else { Invoke-Cli (@('demo', $model, '--subject', $env:DEMO_SUBJECT) + $rest) }
    }
    'sample' {
        # As build.sh sample: pack both packages into artifacts/packages under a version of this run's own (the
        # NuGet cache keys by version), build samples/host against them, run it on the demo model, drop the version from the cache.
        $prefix = ([xml](Get-Content Directory.Build.props -Raw)).Project.PropertyGroup.VersionPrefix | Where-Object { $_ } | Select-Object -First 1
        $suffix = 'local.' + [DateTime]::UtcNow.ToString('yyyyMMddHHmmss') + '.' + $PID; $version = "$prefix-$suffix"
        $cache = (dotnet nuget locals global-packages --list) -replace '^global-packages: ', ''
        try {
            Remove-Item artifacts/packages/Palimpsest.*nupkg -ErrorAction SilentlyContinue
            foreach ($p in 'managed/Palimpsest.Cuda.Interop', 'managed/Palimpsest') {
                dotnet pack $p -c Release -v quiet -nologo -o artifacts/packages --version-suffix $suffix
                if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
            }
            Get-ChildItem artifacts/packages -Name
            dotnet build samples/host -c Release -v quiet -nologo "-p:PalimpsestVersion=$version"
            if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
            dotnet samples/host/bin/Release/net10.0/Host.dll (Join-Path $PSScriptRoot 'data/models/facts-d128-l5')
            exit $LASTEXITCODE
        }
        finally {
            foreach ($id in 'palimpsest', 'palimpsest.cuda.interop') { Remove-Item -Recurse -Force (Join-Path $cache "$id/$version") -ErrorAction SilentlyContinue }
        }
    }
    'bench' {
        dotnet run -c Release --project bench/Palimpsest.Bench -- @rest
        exit $LASTEXITCODE
    }
    'ptx' {
        # clang-14 compiles every kernels/*.cu to PTX (no CUDA toolkit needed); the script is bash
        if (-not (Get-Command bash -ErrorAction SilentlyContinue)) { Write-Error 'ptx needs bash and clang-14 (kernels/compile-ptx.sh)' }
        bash kernels/compile-ptx.sh
        exit $LASTEXITCODE
    }
    default {
        [Console]::Error.WriteLine('usage: pwsh build.ps1 [build|test|demo|sample|bench|ptx]')
        exit 2
    }
}
