package btrfs

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// item is one tree item a search returned.
type item struct {
	objectID uint64
	typ      uint32
	offset   uint64
	data     []byte
}

// search returns every item of tree treeID whose key (objectid, type,
// offset) lies between (objectID, typ, minOffset) and (objectID, typ,
// maxOffset), in key order. It asks the kernel for one buffer at a time and
// resumes after the last key it got, as btrfs-progs does.
func search(fd int, treeID, objectID uint64, typ uint32, minOffset, maxOffset uint64) ([]item, error) {
	var out []item
	args := &searchArgs{}
	for {
		args.key = searchKey{
			treeID:      treeID,
			minObjectID: objectID,
			maxObjectID: objectID,
			minType:     typ,
			maxType:     typ,
			minOffset:   minOffset,
			maxOffset:   maxOffset,
			maxTransID:  math.MaxUint64,
			nrItems:     math.MaxUint32,
		}
		if err := ioctl(fd, iocTreeSearch, unsafe.Pointer(args)); err != nil {
			return nil, err
		}
		n := args.key.nrItems
		if n == 0 {
			return out, nil
		}
		pos := 0
		var last uint64
		for range n {
			var h searchHeader
			hs := int(unsafe.Sizeof(h))
			if pos+hs > len(args.buf) {
				break
			}
			h.objectID = binary.NativeEndian.Uint64(args.buf[pos+8:])
			h.offset = binary.NativeEndian.Uint64(args.buf[pos+16:])
			h.typ = binary.NativeEndian.Uint32(args.buf[pos+24:])
			h.len = binary.NativeEndian.Uint32(args.buf[pos+28:])
			pos += hs
			end := pos + int(h.len)
			if end > len(args.buf) {
				break
			}
			if h.objectID == objectID && h.typ == typ {
				out = append(out, item{
					objectID: h.objectID,
					typ:      h.typ,
					offset:   h.offset,
					data:     append([]byte(nil), args.buf[pos:end]...),
				})
			}
			last = h.offset
			pos = end
		}
		if last >= maxOffset {
			return out, nil
		}
		minOffset = last + 1
	}
}
