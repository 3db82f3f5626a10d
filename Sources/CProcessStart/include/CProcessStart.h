// CProcessStart.h — what the `finetune` executable does before any library it links is initialised.
// A target of its own, linked into the executable alone: library users' programs keep their own
// OpenMP settings.
#ifndef CPROCESSSTART_H
#define CPROCESSSTART_H

/// The spin count given to GNU OpenMP (`GOMP_SPINCOUNT`) where the user set no wait policy: about
/// tens of microseconds of busy-waiting between two parallel regions before an idle thread sleeps.
#define CPS_OPENMP_SPIN_COUNT "3000"

#endif
