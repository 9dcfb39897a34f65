import { FsBlobStore } from '../../src/storage/fs-store.ts';
import { makeTempDir } from '../helpers/tmp.ts';
import { blobStoreContract } from './contract.ts';

blobStoreContract('FsBlobStore', async () => {
  const dir = await makeTempDir('conveyor-fs-store-');
  const store = await new FsBlobStore(dir.path).init();
  return {
    store,
    async teardown() {
      await store.close();
      await dir.cleanup();
    },
  };
});
