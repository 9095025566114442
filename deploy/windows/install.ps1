<#
.SYNOPSIS
    Installs netbar-agent (the cashier PC) or netbar-collector (a customer PC)
    as a Windows service, with its configuration and recovery actions.

.DESCRIPTION
    Copies netbar-<component>.exe to %ProgramFiles%\netbar, writes the
    configuration to %ProgramData%\netbar (kept if one is there already;
    the defaults print-config gives on Windows otherwise), checks it, and
    registers the service with the binary's own `install-service`: automatic
    start, restarted after 5 s, 5 s and 60 s when it crashes or stops on an
    error (the failure count reset after a day). A service that cannot start
    writes why to the Application event log (source netbar-<component>)
    and stops with service-specific exit code 1 (`sc query` shows it).
    Running the script again updates an installed service.

    %ProgramData%\netbar holds the registration log, keys and certificates:
    it is made readable by SYSTEM, Administrators and the service only.
    The agent runs as its own virtual account, NT SERVICE\netbar-agent; the
    collector runs as LocalSystem, which it needs to drive the lock screen
    in the customer's session.

    Run from an elevated PowerShell:
        .\install.ps1 -Component agent
        .\install.ps1 -Component collector -Enrollment E:\st-017

.PARAMETER Component
    agent or collector.
.PARAMETER Source
    The folder holding netbar-<component>.exe (default: this script's
    folder, the unpacked zip).
.PARAMETER Config
    A configuration file to install in place of the current or default one.
.PARAMETER Enrollment
    Collector only: the folder `netbar-agent enroll station ID` wrote
    (collector.toml, station.key, and with certificates station.pem and
    ca.pem). The station's TLS key, made on this PC by
    `netbar-collector pki request --id ID`, is already in %ProgramData%\netbar.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][ValidateSet('agent', 'collector')][string]$Component,
    [string]$Source = $PSScriptRoot,
    [string]$Config,
    [string]$Enrollment
)
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell (Run as administrator).'
}

$name = "netbar-$Component"
$programDir = Join-Path $env:ProgramFiles 'netbar'
$dataDir = Join-Path $env:ProgramData 'netbar'
$exe = Join-Path $programDir "$name.exe"
$configPath = Join-Path $dataDir "$Component.toml"

function Invoke-Netbar {
    param([string[]]$Arguments)
    $output = & $exe @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$name $($Arguments -join ' ') failed: $output" }
    $output
}

$built = Join-Path $Source "$name.exe"
if (-not (Test-Path $built)) { throw "$built not found: pass -Source, the folder holding $name.exe" }

# An installed service is stopped and unregistered first; its data stays.
if (Get-Service -Name $name -ErrorAction SilentlyContinue) {
    Stop-Service -Name $name -Force
    if (Test-Path $exe) { Invoke-Netbar @('uninstall-service') | Out-Null }
}
New-Item -ItemType Directory -Force -Path $programDir, $dataDir | Out-Null
Copy-Item -Force $built $exe
# Its PowerShell completion beside it (README: how to load it).
$completion = Join-Path $Source "$name-completion.ps1"
if (Test-Path $completion) { Copy-Item -Force $completion $programDir }

# Only SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) may touch the
# records and keys; the agent's own account is added below.
& icacls.exe $dataDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F' | Out-Null
if ($LASTEXITCODE -ne 0) { throw "icacls could not restrict $dataDir" }

if ($Enrollment) {
    if ($Component -ne 'collector') { throw '-Enrollment is for the collector' }
    foreach ($file in 'collector.toml', 'station.key', 'station.pem', 'ca.pem') {
        $from = Join-Path $Enrollment $file
        if (Test-Path $from) { Copy-Item -Force $from (Join-Path $dataDir $file) }
    }
}
if ($Config) {
    Copy-Item -Force $Config $configPath
} elseif (-not (Test-Path $configPath)) {
    # The defaults: on Windows print-config puts the data, spool and log
    # folders under %ProgramData%\netbar. Written without a byte order mark.
    $text = ((Invoke-Netbar @('print-config')) -join "`n") + "`n"
    [System.IO.File]::WriteAllText($configPath, $text)
}

# Both binaries take --config after the subcommand.
Invoke-Netbar @('check-config', '--config', $configPath) | Write-Host
Invoke-Netbar @('install-service', '--config', $configPath) | Write-Host

if ($Component -eq 'agent') {
    # Its own virtual account, with the data folder and nothing else.
    & sc.exe config $name obj= "NT SERVICE\$name" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "sc.exe could not give $name its own account" }
    & icacls.exe $dataDir /grant "NT SERVICE\${name}:(OI)(CI)M" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls could not let $name write $dataDir" }
}


Restart-Service -Name $name
Write-Host "$name installed: $exe, configuration $configPath, running."
