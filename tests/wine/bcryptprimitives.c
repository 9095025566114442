/*
 * A stand-in for Windows' bcryptprimitives.dll, which Debian's wine 8 lacks
 * and Rust's standard library (since 1.78) loads for its random numbers.
 * Used only to run netbar's Windows build under wine in tests (tests/wine/run);
 * never shipped: every Windows since 8 has the real one.
 *
 * ProcessPrng fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), which wine implements over the host's random source.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
