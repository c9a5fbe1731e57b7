import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

export type ParquetWasm = typeof import('parquet-wasm/esm');

const require = createRequire(import.meta.url);

// Node has WebAssembly as a global; TypeScript declares it only in its DOM library.
declare const WebAssembly: { Module: new (bytes: Uint8Array) => WasmModule };
/** A compiled WebAssembly module (it can be sent to worker threads). */
export type WasmModule = object;

/**
 * parquet-wasm, compiled once per process. Its Node entry compiles the 5 MB
 * wasm in every thread that loads it; its ESM build takes an already
 * compiled module instead, and a compiled module passed to a worker thread
 * shares its machine code. A worker lane that loaded its own copy added
 * 8-17 MB of memory, one given the main thread's module 4-5 MB.
 */
let compiled: WasmModule | null = null;
let loaded: Promise<ParquetWasm> | null = null;

/** The compiled module, to hand to worker threads (see `useParquetModule`). */
export function parquetModule(): WasmModule {
  return (compiled ??= new WebAssembly.Module(readFileSync(require.resolve('parquet-wasm/esm/parquet_wasm_bg.wasm'))));
}

/** In a worker thread: use the module the main thread compiled (call before `parquetWasm`). */
export function useParquetModule(module: WasmModule): void {
  compiled ??= module;
}

/** parquet-wasm, ready to use. */
export function parquetWasm(): Promise<ParquetWasm> {
  return (loaded ??= import('parquet-wasm/esm').then((pw) => {
    pw.initSync({ module: parquetModule() });
    return pw;
  }));
}
