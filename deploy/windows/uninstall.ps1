<#
.SYNOPSIS
    Stops and removes the netbar-agent or netbar-collector Windows service.

.DESCRIPTION
    Unregisters the service with the binary's own `uninstall-service` and
    removes %ProgramFiles%\netbar\netbar-<component>.exe and its PowerShell
    completion. The configuration,
    keys and the registration log in %ProgramData%\netbar stay (the law keeps
    the log for its retention period); -RemoveData deletes them too.

        .\uninstall.ps1 -Component collector
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][ValidateSet('agent', 'collector')][string]$Component,
    [switch]$RemoveData
)
$ErrorActionPreference = 'Stop'

$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell (Run as administrator).'
}

$name = "netbar-$Component"
$exe = Join-Path (Join-Path $env:ProgramFiles 'netbar') "$name.exe"
if (Get-Service -Name $name -ErrorAction SilentlyContinue) {
    if (Test-Path $exe) {
        $output = & $exe uninstall-service 2>&1
        if ($LASTEXITCODE -ne 0) { throw "$name uninstall-service failed: $output" }
    } else {
        Stop-Service -Name $name -Force
        & sc.exe delete $name | Out-Null
    }
}
if (Test-Path $exe) { Remove-Item -Force $exe }
$completion = Join-Path (Join-Path $env:ProgramFiles 'netbar') "$name-completion.ps1"
if (Test-Path $completion) { Remove-Item -Force $completion }
if ($RemoveData) {
    Remove-Item -Recurse -Force (Join-Path $env:ProgramData 'netbar')
    Write-Host "$name removed, with its data."
} else {
    Write-Host "$name removed; its data stays in $(Join-Path $env:ProgramData 'netbar')."
}
