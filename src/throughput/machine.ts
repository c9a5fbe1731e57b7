import os from 'node:os';

/** What a benchmark ran on, printed with its numbers so results can be compared. */
export interface Machine {
  cpus: number;
  cpuModel: string;
  memoryGB: number;
  platform: string;
  node: string;
}

export function describeMachine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: os.availableParallelism(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    memoryGB: os.totalmem() / 2 ** 30,
    platform: `${os.platform()} ${os.arch()}`,
    node: process.versions.node,
  };
}
